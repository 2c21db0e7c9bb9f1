/* SPDX-License-Identifier: MIT */
/*
 * front: what the HTTP front alone costs per parked request.
 *
 *   front mhd|epoll PORT [THREADS]
 *
 * Both modes answer every request 200 only after a simulated group commit:
 * one thread takes everything queued, sleeps 1 ms (the commit and its
 * fdatasync, with no CPU spent) and completes the batch.  Nothing is parsed
 * beyond the framing and nothing is stored, so the CPU the process uses is
 * the front's own (bench/front.sh runs both under the `make bench` load).
 *
 *   mhd    libmicrohttpd as dlrd's http.c runs it: internal epoll thread
 *          pool, 20 KiB connection pool, MHD_suspend_connection() while the
 *          request waits, MHD_resume_connection() from the committing thread.
 *   epoll  the design it is compared with: one epoll loop per thread (its own
 *          SO_REUSEPORT listener), a waiting connection stays in the epoll
 *          set and is simply not read, and the committing thread hands each
 *          loop its finished requests with one eventfd write per batch.
 *
 * A model for measuring, not a server: no timeouts, no limits beyond a
 * 16 KiB request, no error answers.
 */
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define MAX_THREADS 16
#define REQ_BUF     16384

struct item {
	struct item *next;
	void *conn;
	unsigned loop; /* epoll mode: the loop that owns the connection */
};

/* ---- the simulated group commit ---- */

static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t q_cv = PTHREAD_COND_INITIALIZER;
static struct item *q_head, *q_tail;
static void (*complete_batch)(struct item *list);

static void q_push(struct item *it)
{
	bool wake;

	it->next = NULL;
	pthread_mutex_lock(&q_mu);
	wake = q_head == NULL;
	if (q_tail)
		q_tail->next = it;
	else
		q_head = it;
	q_tail = it;
	pthread_mutex_unlock(&q_mu);
	if (wake)
		pthread_cond_signal(&q_cv);
}

static void *committer_main(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&q_mu);
		while (!q_head)
			pthread_cond_wait(&q_cv, &q_mu);
		pthread_mutex_unlock(&q_mu);
		struct timespec commit = {0, 1000000};
		nanosleep(&commit, NULL);
		pthread_mutex_lock(&q_mu);
		struct item *batch = q_head;
		q_head = q_tail = NULL;
		pthread_mutex_unlock(&q_mu);
		complete_batch(batch);
	}
	return NULL;
}

/* ---- libmicrohttpd with suspend/resume ---- */

struct mhd_req {
	struct item it;
	struct MHD_Connection *mc;
	bool parked;
};

static struct MHD_Response *mhd_ok;

static void mhd_complete(struct item *list)
{
	for (struct item *next; list; list = next) {
		next = list->next;
		struct mhd_req *r = list->conn;
		MHD_resume_connection(r->mc);
	}
}

static enum MHD_Result mhd_handler(void *cls, struct MHD_Connection *mc, const char *url,
                                   const char *method, const char *version, const char *data,
                                   size_t *size, void **ctx)
{
	struct mhd_req *r = *ctx;

	(void)cls, (void)url, (void)method, (void)version, (void)data;
	if (!r) {
		r = xcalloc(1, sizeof(*r));
		r->mc = mc;
		r->it.conn = r;
		*ctx = r;
		return MHD_YES;
	}
	if (*size) {
		*size = 0;
		return MHD_YES;
	}
	if (!r->parked) {
		r->parked = true;
		MHD_suspend_connection(mc);
		q_push(&r->it);
		return MHD_YES;
	}
	return MHD_queue_response(mc, MHD_HTTP_OK, mhd_ok);
}

static void mhd_done(void *cls, struct MHD_Connection *mc, void **ctx,
                     enum MHD_RequestTerminationCode why)
{
	(void)cls, (void)mc, (void)why;
	free(*ctx);
	*ctx = NULL;
}

static int run_mhd(unsigned port, unsigned threads)
{
	mhd_ok = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
	MHD_add_response_header(mhd_ok, MHD_HTTP_HEADER_CONTENT_TYPE, "text/plain");
	complete_batch = mhd_complete;
	struct MHD_Daemon *d = MHD_start_daemon(
	    MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port, NULL, NULL,
	    mhd_handler, NULL, MHD_OPTION_THREAD_POOL_SIZE, threads,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(16384 + 4096), MHD_OPTION_NOTIFY_COMPLETED,
	    mhd_done, NULL, MHD_OPTION_CONNECTION_LIMIT, 4096u, MHD_OPTION_END);
	if (!d) {
		fprintf(stderr, "front: libmicrohttpd cannot listen on %u\n", port);
		return 1;
	}
	for (;;)
		pause();
}

/* ---- one epoll loop per thread, connections parked in place ---- */

struct ep_conn {
	struct item it;
	int fd;
	bool parked;     /* waiting for its commit: not read meanwhile */
	bool unread;     /* readable while parked: read once released */
	size_t len, end; /* bytes buffered; end of the whole request, 0 = unknown */
	char buf[REQ_BUF];
};

struct ep_loop {
	int ep, wake, listen_fd;
	pthread_mutex_t mu;
	struct item *done; /* finished requests, from the committer */
};

static struct ep_loop loops[MAX_THREADS];
static unsigned n_loops;
static const char ep_ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                            "Content-Type: text/plain\r\n\r\n";

static void ep_complete(struct item *list)
{
	struct item *per[MAX_THREADS] = {0}, *last[MAX_THREADS] = {0};

	for (struct item *next; list; list = next) {
		next = list->next;
		list->next = per[list->loop];
		if (!per[list->loop])
			last[list->loop] = list;
		per[list->loop] = list;
	}
	for (unsigned i = 0; i < n_loops; i++) {
		if (!per[i])
			continue;
		pthread_mutex_lock(&loops[i].mu);
		last[i]->next = loops[i].done;
		loops[i].done = per[i];
		pthread_mutex_unlock(&loops[i].mu);
		uint64_t one = 1;
		if (write(loops[i].wake, &one, sizeof(one)) < 0 && errno != EAGAIN)
			perror("front: eventfd");
	}
}

static void ep_close(struct ep_loop *l, struct ep_conn *c)
{
	epoll_ctl(l->ep, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	free(c);
}

/* True once the buffer holds a whole request (headers and Content-Length). */
static bool ep_whole(struct ep_conn *c)
{
	if (c->end)
		return c->len >= c->end;
	const char *eoh = memmem(c->buf, c->len, "\r\n\r\n", 4);
	if (!eoh)
		return false;
	uint64_t body = 0;
	for (const char *p = c->buf; p < eoh;) {
		const char *nl = memchr(p, '\n', (size_t)(eoh - p));
		if (!nl)
			break;
		if (nl - p > 15 && strncasecmp(p, "content-length:", 15) == 0) {
			const char *v = p + 15, *ve = nl;
			while (v < ve && *v == ' ')
				v++;
			while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
				ve--;
			if (util_parse_u64(v, (size_t)(ve - v), &body) != 0)
				body = REQ_BUF;
		}
		p = nl + 1;
	}
	c->end = (size_t)(eoh - c->buf) + 4 + (size_t)body;
	return c->len >= c->end;
}

static void ep_park_if_whole(unsigned li, struct ep_conn *c)
{
	if (!ep_whole(c))
		return;
	c->parked = true;
	c->it.conn = c;
	c->it.loop = li;
	q_push(&c->it);
}

static void ep_read(unsigned li, struct ep_conn *c)
{
	struct ep_loop *l = &loops[li];

	if (c->parked) {
		c->unread = true;
		return;
	}
	for (;;) {
		size_t room = REQ_BUF - c->len;
		ssize_t n = room ? recv(c->fd, c->buf + c->len, room, 0) : -1;
		if (n == 0 || (n < 0 && (room == 0 || errno != EAGAIN))) {
			ep_close(l, c);
			return;
		}
		if (n < 0)
			return;
		c->len += (size_t)n;
		ep_park_if_whole(li, c);
		if (c->parked || (size_t)n < room)
			return; /* a short read drained the socket */
	}
}

static void ep_answer(unsigned li, struct ep_conn *c)
{
	if (send(c->fd, ep_ok, sizeof(ep_ok) - 1, MSG_NOSIGNAL) != (ssize_t)(sizeof(ep_ok) - 1)) {
		ep_close(&loops[li], c);
		return;
	}
	memmove(c->buf, c->buf + c->end, c->len - c->end);
	c->len -= c->end;
	c->end = 0;
	c->parked = false;
	ep_park_if_whole(li, c); /* a pipelined request */
	if (!c->parked && c->unread) {
		c->unread = false;
		ep_read(li, c);
	}
}

static void ep_accept(struct ep_loop *l)
{
	for (;;) {
		int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct ep_conn *c = xcalloc(1, sizeof(*c));
		c->fd = fd;
		struct epoll_event ev = {.events = EPOLLIN | EPOLLRDHUP | EPOLLET, .data.ptr = c};
		if (epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			free(c);
		}
	}
}

static void *ep_main(void *arg)
{
	unsigned li = (unsigned)(uintptr_t)arg;
	struct ep_loop *l = &loops[li];
	struct epoll_event ev[256];

	for (;;) {
		int n = epoll_wait(l->ep, ev, 256, -1);
		for (int i = 0; i < n; i++) {
			void *p = ev[i].data.ptr;
			if (p == &l->listen_fd) {
				ep_accept(l);
			} else if (p == &l->wake) {
				uint64_t v;
				if (read(l->wake, &v, sizeof(v)) < 0 && errno != EAGAIN)
					perror("front: eventfd");
				pthread_mutex_lock(&l->mu);
				struct item *done = l->done;
				l->done = NULL;
				pthread_mutex_unlock(&l->mu);
				for (struct item *next; done; done = next) {
					next = done->next;
					ep_answer(li, done->conn);
				}
			} else {
				ep_read(li, p);
			}
		}
	}
	return NULL;
}

static int run_epoll(unsigned port, unsigned threads)
{
	pthread_t th[MAX_THREADS];

	complete_batch = ep_complete;
	n_loops = threads;
	for (unsigned i = 0; i < threads; i++) {
		struct ep_loop *l = &loops[i];
		int one = 1;
		struct sockaddr_in sa = {.sin_family = AF_INET,
		                         .sin_port = htons((uint16_t)port),
		                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		pthread_mutex_init(&l->mu, NULL);
		l->ep = epoll_create1(EPOLL_CLOEXEC);
		l->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		l->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		setsockopt(l->listen_fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (l->ep < 0 || l->wake < 0 || l->listen_fd < 0 ||
		    bind(l->listen_fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
		    listen(l->listen_fd, 1024) != 0) {
			fprintf(stderr, "front: cannot listen on %u: %s\n", port, strerror(errno));
			return 1;
		}
		struct epoll_event lev = {.events = EPOLLIN, .data.ptr = &l->listen_fd};
		struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &l->wake};
		epoll_ctl(l->ep, EPOLL_CTL_ADD, l->listen_fd, &lev);
		epoll_ctl(l->ep, EPOLL_CTL_ADD, l->wake, &wev);
	}
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, ep_main, (void *)(uintptr_t)i);
	pthread_join(th[0], NULL);
	return 0;
}

static bool parse_uint(const char *s, uint64_t lo, uint64_t hi, unsigned *out)
{
	uint64_t v;
	if (util_parse_u64(s, strlen(s), &v) != 0 || v < lo || v > hi)
		return false;
	*out = (unsigned)v;
	return true;
}

int main(int argc, char **argv)
{
	unsigned port, threads = 2;
	pthread_t committer;

	if (argc < 3 || (strcmp(argv[1], "mhd") != 0 && strcmp(argv[1], "epoll") != 0) ||
	    !parse_uint(argv[2], 1, 65535, &port) ||
	    (argc > 3 && !parse_uint(argv[3], 1, MAX_THREADS, &threads))) {
		fprintf(stderr, "usage: front mhd|epoll PORT [THREADS]\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	pthread_create(&committer, NULL, committer_main, NULL);
	return strcmp(argv[1], "mhd") == 0 ? run_mhd(port, threads) : run_epoll(port, threads);
}
