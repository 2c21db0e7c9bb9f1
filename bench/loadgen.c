/* SPDX-License-Identifier: MIT */
/*
 * loadgen: the soak test's load generator.  wrk cannot hold a rate, so this
 * sends signed Twilio callbacks (bench/cbgen.h, generated on the fly by a
 * second thread, so a ten-minute run needs no data file) over keep-alive
 * connections at a fixed rate, or as fast as the server answers with
 * --rate 0.
 *
 * Latency is measured from the moment a request was due, not from when it
 * was written, so a server that stalls cannot hide behind the generator
 * waiting for it (coordinated omission).  Every answer is compared with the
 * status the generator expects (200, or 401/400 for the bad requests mixed
 * in).  At the end no new request is sent and every outstanding one is waited
 * for, so the counts printed (key=value lines) are exact: the verifier can
 * require the database to hold exactly the distinct events answered 2xx.
 *
 * Usage: loadgen --port P [--conns 64] [--rate R] [--duration S] [--seed S]
 *                --token T --url PUBLIC_URL [--dup F] [--ooo F] [--bad F]
 *                [--pid DLRD_PID] [--report S] [--chunk MESSAGES (500)]
 */
#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cbgen.h"
#include "util.h"

#define REQ_MAX            2048
#define RESP_MAX           16384
#define HIST_LINEAR        64
#define HIST_SUB           32
#define HIST_N             (HIST_LINEAR + 40 * HIST_SUB)
#define READY_CHUNKS       8
#define DRAIN_MS           15000
#define CONNECT_TIMEOUT_MS 2000

/* ---- latency histogram (microseconds, about 3% resolution) ---- */

struct hist {
	uint64_t b[HIST_N];
	uint64_t n, max;
};

static size_t hist_index(uint64_t v)
{
	if (v < HIST_LINEAR)
		return (size_t)v;
	unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= 6 */
	size_t i = HIST_LINEAR + (size_t)(e - 6) * HIST_SUB + ((v >> (e - 5)) & (HIST_SUB - 1));
	return i < HIST_N ? i : HIST_N - 1;
}

/* The largest value that falls in bucket i. */
static uint64_t hist_value(size_t i)
{
	if (i < HIST_LINEAR)
		return i;
	size_t e = (i - HIST_LINEAR) / HIST_SUB + 6, sub = (i - HIST_LINEAR) % HIST_SUB;
	return ((uint64_t)(HIST_SUB + sub + 1) << (e - 5)) - 1;
}

static void hist_add(struct hist *h, uint64_t v)
{
	h->b[hist_index(v)]++;
	h->n++;
	if (v > h->max)
		h->max = v;
}

static uint64_t hist_pct(const struct hist *h, double p)
{
	uint64_t want = (uint64_t)ceil((double)h->n * p / 100.0), cum = 0;
	if (!h->n)
		return 0;
	for (size_t i = 0; i < HIST_N; i++) {
		cum += h->b[i];
		if (cum >= want && cum)
			return hist_value(i) < h->max ? hist_value(i) : h->max;
	}
	return h->max;
}

/* ---- request supply: a generator thread keeps a few chunks ready ---- */

struct lreq {
	const char *p; /* the whole HTTP request */
	size_t n;
	unsigned expect;
	bool first, new_msg;
};

struct lchunk {
	struct lreq *reqs;
	size_t n;
	char *buf;
	struct lchunk *next;
};

struct supply {
	struct cbgen_params params;
	size_t chunk_messages;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct lchunk *head, *tail; /* ready chunks, guarded by mu */
	size_t ready;               /* guarded by mu */
	bool stop;                  /* guarded by mu */
	pthread_t thread;
};

static struct lchunk *lchunk_build(const struct supply *s, uint64_t id)
{
	struct cbgen_chunk *c = NULL;
	struct lchunk *lc;
	size_t len = 0;

	if (cbgen_chunk_new(&s->params, id, s->chunk_messages, &c) != 0) {
		fprintf(stderr, "loadgen: bad generator parameters\n");
		exit(2);
	}
	lc = xcalloc(1, sizeof(*lc));
	lc->n = c->n;
	lc->reqs = xcalloc(c->n, sizeof(*lc->reqs));
	for (size_t i = 0; i < c->n; i++)
		len += c->reqs[i].body_len + 256;
	lc->buf = xmalloc(len);
	len = 0;
	for (size_t i = 0; i < c->n; i++) {
		const struct cbgen_req *r = &c->reqs[i];
		size_t n = util_fmt(lc->buf + len, 256,
		                    "POST " CBGEN_PATH " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
		                    "User-Agent: TwilioProxy/1.1\r\n"
		                    "Content-Type: application/x-www-form-urlencoded\r\n"
		                    "X-Twilio-Signature: %s\r\nContent-Length: %zu\r\n\r\n",
		                    r->sig, r->body_len);
		memcpy(lc->buf + len + n, r->body, r->body_len);
		lc->reqs[i] = (struct lreq){NULL, n + r->body_len, r->expect, r->first, r->new_msg};
		len += n + r->body_len;
	}
	len = 0;
	for (size_t i = 0; i < c->n; i++) {
		lc->reqs[i].p = lc->buf + len;
		len += lc->reqs[i].n;
	}
	cbgen_chunk_free(c);
	return lc;
}

static void lchunk_free(struct lchunk *lc)
{
	if (!lc)
		return;
	free(lc->reqs);
	free(lc->buf);
	free(lc);
}

static void *supply_main(void *arg)
{
	struct supply *s = arg;
	/* Generating (HMACs, sorting) must not delay the sending thread. */
	if (setpriority(PRIO_PROCESS, (id_t)gettid(), 5) != 0)
		perror("loadgen: setpriority");
	for (uint64_t id = 0;; id++) {
		struct lchunk *lc = lchunk_build(s, id);
		pthread_mutex_lock(&s->mu);
		while (s->ready >= READY_CHUNKS && !s->stop)
			pthread_cond_wait(&s->cv, &s->mu);
		if (s->stop) {
			pthread_mutex_unlock(&s->mu);
			lchunk_free(lc);
			return NULL;
		}
		if (s->tail)
			s->tail->next = lc;
		else
			s->head = lc;
		s->tail = lc;
		s->ready++;
		pthread_cond_broadcast(&s->cv);
		pthread_mutex_unlock(&s->mu);
	}
}

/* Takes the next ready chunk, waiting for the generator if need be; the
 * time waited is added to *stall_ns. */
static struct lchunk *supply_take(struct supply *s, uint64_t *stall_ns)
{
	struct lchunk *lc;
	pthread_mutex_lock(&s->mu);
	if (!s->head) {
		uint64_t t0 = util_mono_ns();
		while (!s->head)
			pthread_cond_wait(&s->cv, &s->mu);
		*stall_ns += util_mono_ns() - t0;
	}
	lc = s->head;
	s->head = lc->next;
	if (!s->head)
		s->tail = NULL;
	s->ready--;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	return lc;
}

/* ---- connections ---- */

struct conn {
	int fd;
	bool busy;
	char out[REQ_MAX];
	size_t out_n, out_off;
	char in[RESP_MAX];
	size_t in_n;
	uint64_t due_ns; /* when the outstanding request was due */
	unsigned expect;
	bool first;
};

struct stats {
	uint64_t sent, answered, ok, s400, s401, s503, other, mismatch, conn_errors, connect_errors;
	uint64_t sent_first_ok, first_ok_failed, sent_new_msg, late;
	struct hist lat, lat_iv;
};

struct loadgen {
	struct sockaddr_in addr;
	int ep;
	struct conn *conns;
	unsigned nconns;
	struct stats st;
};

/* Connects c (blocking, at most CONNECT_TIMEOUT_MS: loopback answers at
 * once unless the server's accept queue is full).  On failure c->fd is -1
 * and the connection is retried when it is next needed. */
static int conn_open(struct loadgen *lg, struct conn *c)
{
	int one = 1;
	struct timeval tv = {CONNECT_TIMEOUT_MS / 1000, (CONNECT_TIMEOUT_MS % 1000) * 1000};
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(c->fd, (struct sockaddr *)&lg->addr, sizeof(lg->addr)) != 0) {
		lg->st.connect_errors++;
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	if (epoll_ctl(lg->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->busy = false;
	c->in_n = 0;
	return 0;
}

/* The connection broke or the server closed it: an outstanding request is
 * lost (the server may or may not have stored it). */
static void conn_reset(struct loadgen *lg, struct conn *c)
{
	if (c->busy) {
		lg->st.conn_errors++;
		if (c->first && c->expect == 200)
			lg->st.first_ok_failed++;
	}
	close(c->fd);
	c->fd = -1;
	c->busy = false;
	conn_open(lg, c);
}

static void conn_flush(struct loadgen *lg, struct conn *c)
{
	while (c->out_off < c->out_n) {
		ssize_t w = send(c->fd, c->out + c->out_off, c->out_n - c->out_off, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
			epoll_ctl(lg->ep, EPOLL_CTL_MOD, c->fd, &ev);
			return;
		}
		if (w <= 0) {
			conn_reset(lg, c);
			return;
		}
		c->out_off += (size_t)w;
	}
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
	epoll_ctl(lg->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void conn_send(struct loadgen *lg, struct conn *c, const struct lreq *r, uint64_t due)
{
	assert(c->fd >= 0 && !c->busy);
	memcpy(c->out, r->p, r->n);
	c->out_n = r->n;
	c->out_off = 0;
	c->busy = true;
	c->due_ns = due;
	c->expect = r->expect;
	c->first = r->first;
	lg->st.sent++;
	if (r->first && r->expect == 200)
		lg->st.sent_first_ok++;
	if (r->new_msg)
		lg->st.sent_new_msg++;
	conn_flush(lg, c);
}

/* Parses one complete response from c->in, if there is one.  Returns 1 when a
 * response was consumed, 0 when more bytes are needed, -1 on garbage. */
static int conn_parse(struct loadgen *lg, struct conn *c, bool *close_after)
{
	char *end = memmem(c->in, c->in_n, "\r\n\r\n", 4);
	size_t hdr_len, body_len = 0;
	unsigned status = 0;
	uint64_t v;

	if (!end)
		return c->in_n >= sizeof(c->in) ? -1 : 0;
	hdr_len = (size_t)(end - c->in) + 4;
	if (c->in_n < 12 || memcmp(c->in, "HTTP/1.", 7) != 0)
		return -1;
	for (int i = 9; i < 12; i++)
		status = status * 10 + (unsigned)(c->in[i] - '0');
	*close_after = false;
	for (char *p = memchr(c->in, '\n', hdr_len); p && p < end;
	     p = memchr(p, '\n', (size_t)(end - p))) {
		p++;
		char *eol = memchr(p, '\r', (size_t)(end + 2 - p));
		size_t n = eol ? (size_t)(eol - p) : 0;
		if (n > 15 && strncasecmp(p, "Content-Length:", 15) == 0) {
			char *q = p + 15;
			while (*q == ' ')
				q++;
			if (util_parse_u64(q, (size_t)(eol - q), &v) != 0 || v > RESP_MAX)
				return -1;
			body_len = (size_t)v;
		} else if (n >= 17 && strncasecmp(p, "Connection: close", 17) == 0) {
			*close_after = true;
		}
	}
	if (c->in_n < hdr_len + body_len)
		return 0;

	uint64_t now = util_mono_ns();
	uint64_t us = now > c->due_ns ? (now - c->due_ns) / 1000 : 0;
	struct stats *st = &lg->st;
	hist_add(&st->lat, us);
	hist_add(&st->lat_iv, us);
	st->answered++;
	if (status >= 200 && status < 300)
		st->ok++;
	else if (status == 400)
		st->s400++;
	else if (status == 401)
		st->s401++;
	else if (status == 503)
		st->s503++;
	else
		st->other++;
	bool as_expected = c->expect == 200 ? status >= 200 && status < 300 : status == c->expect;
	if (!as_expected) {
		st->mismatch++;
		if (c->first && c->expect == 200)
			st->first_ok_failed++;
	}
	memmove(c->in, c->in + hdr_len + body_len, c->in_n - hdr_len - body_len);
	c->in_n -= hdr_len + body_len;
	c->busy = false;
	return 1;
}

static void conn_readable(struct loadgen *lg, struct conn *c)
{
	for (;;) {
		ssize_t r = recv(c->fd, c->in + c->in_n, sizeof(c->in) - c->in_n, MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && errno == EAGAIN)
			return;
		if (r <= 0) {
			conn_reset(lg, c);
			return;
		}
		c->in_n += (size_t)r;
		bool close_after = false;
		int pr;
		while ((pr = conn_parse(lg, c, &close_after)) == 1) {
			if (close_after) {
				close(c->fd);
				c->fd = -1;
				conn_open(lg, c);
				return;
			}
		}
		if (pr < 0) {
			lg->st.other++;
			conn_reset(lg, c);
			return;
		}
	}
}

static long rss_kb(long pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;
	util_fmt(path, sizeof(path), "/proc/%ld/status", pid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "VmRSS:", 6) == 0) {
			char *p = line + 6, *q;
			while (*p == ' ' || *p == '\t')
				p++;
			q = p;
			while (*q >= '0' && *q <= '9')
				q++;
			uint64_t v;
			if (util_parse_u64(p, (size_t)(q - p), &v) == 0)
				kb = (long)v;
		}
	}
	fclose(f);
	return kb;
}

static int usage(void)
{
	fputs("usage: loadgen --port P --token T --url PUBLIC_URL [--conns 64] [--rate R]\n"
	      "               [--duration S] [--seed S] [--dup F] [--ooo F] [--bad F]\n"
	      "               [--pid DLRD_PID] [--report S] [--chunk MESSAGES]\n",
	      stderr);
	return 2;
}

static int opt_u64(const char *v, uint64_t *out)
{
	return v && util_parse_u64(v, strlen(v), out) == 0 ? 0 : -1;
}

static int opt_frac(const char *v, double *out)
{
	char *end = NULL;
	if (!v)
		return -1;
	*out = strtod(v, &end);
	return end != v && !*end && *out >= 0 && *out < 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
	static struct loadgen lg;
	struct supply s = {.params = {.seed = 1, .dup_rate = 0.10, .ooo_rate = 0.05},
	                   .chunk_messages = 500};
	uint64_t port = 0, nconns = 64, rate = 0, duration = 10, report = 10, pid = 0, chunk = 500;
	struct lchunk *cur = NULL;
	size_t cur_i = 0;
	long rss_start = -1, rss_1min = -1, rss_end = -1, rss_max = -1;
	uint64_t stall_ns = 0;

	for (int i = 1; i < argc; i += 2) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		int rc = v ? 0 : -1;
		if (!strcmp(o, "--port"))
			rc = opt_u64(v, &port);
		else if (!strcmp(o, "--conns"))
			rc = opt_u64(v, &nconns);
		else if (!strcmp(o, "--rate"))
			rc = opt_u64(v, &rate);
		else if (!strcmp(o, "--duration"))
			rc = opt_u64(v, &duration);
		else if (!strcmp(o, "--report"))
			rc = opt_u64(v, &report);
		else if (!strcmp(o, "--pid"))
			rc = opt_u64(v, &pid);
		else if (!strcmp(o, "--chunk"))
			rc = opt_u64(v, &chunk);
		else if (!strcmp(o, "--seed"))
			rc = opt_u64(v, &s.params.seed);
		else if (!strcmp(o, "--token"))
			s.params.token = v;
		else if (!strcmp(o, "--url"))
			s.params.public_url = v;
		else if (!strcmp(o, "--dup"))
			rc = opt_frac(v, &s.params.dup_rate);
		else if (!strcmp(o, "--ooo"))
			rc = opt_frac(v, &s.params.ooo_rate);
		else if (!strcmp(o, "--bad"))
			rc = opt_frac(v, &s.params.bad_rate);
		else
			rc = -1;
		if (rc)
			return usage();
	}
	if (!port || port > 65535 || !nconns || nconns > 10000 || !s.params.token ||
	    !s.params.public_url || !duration || !report || !chunk)
		return usage();
	s.chunk_messages = chunk;

	pthread_mutex_init(&s.mu, NULL);
	pthread_cond_init(&s.cv, NULL);
	if (pthread_create(&s.thread, NULL, supply_main, &s) != 0)
		return 2;

	lg.addr.sin_family = AF_INET;
	lg.addr.sin_port = htons((uint16_t)port);
	lg.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lg.ep = epoll_create1(EPOLL_CLOEXEC);
	lg.nconns = (unsigned)nconns;
	lg.conns = xcalloc(nconns, sizeof(*lg.conns));
	for (unsigned i = 0; i < lg.nconns; i++) {
		if (conn_open(&lg, &lg.conns[i]) != 0) {
			fprintf(stderr, "loadgen: cannot connect to 127.0.0.1:%u: %s\n",
			        (unsigned)port, strerror(errno));
			return 2;
		}
	}
	if (pid)
		rss_start = rss_max = rss_kb((long)pid);
	/* The clock starts once the generator is a few chunks ahead. */
	pthread_mutex_lock(&s.mu);
	while (s.ready < READY_CHUNKS)
		pthread_cond_wait(&s.cv, &s.mu);
	pthread_mutex_unlock(&s.mu);
	cur = supply_take(&s, &stall_ns);
	stall_ns = 0;

	const uint64_t start = util_mono_ns();
	const uint64_t end = start + duration * 1000000000u;
	uint64_t next_report = start + report * 1000000000u, last_sent = 0, last_ans = 0;
	uint64_t iv_start = start, drain_deadline = 0;
	bool sending = true;
	printf("# t_s sent_per_s answered_per_s ok non2xx_unexpected conn_errors p50_ms p99_ms "
	       "max_ms outstanding rss_kb\n");
	fflush(stdout);

	for (;;) {
		struct epoll_event evs[256];
		uint64_t now = util_mono_ns();
		unsigned outstanding = 0;

		if (sending && now >= end) {
			sending = false;
			drain_deadline = now + DRAIN_MS * 1000000u;
		}
		/* Send what is due on idle connections. */
		if (sending) {
			uint64_t due_n = rate ? (now - start) * rate / 1000000000u + 1 : UINT64_MAX;
			/* One pass: each idle connection takes at most one request. */
			for (unsigned k = 0; k < lg.nconns && lg.st.sent < due_n; k++) {
				struct conn *c = &lg.conns[k];
				if (c->busy || (c->fd < 0 && conn_open(&lg, c) != 0))
					continue;
				if (!cur || cur_i == cur->n) {
					lchunk_free(cur);
					cur = supply_take(&s, &stall_ns);
					cur_i = 0;
				}
				uint64_t due = rate ? start + lg.st.sent * 1000000000u / rate : now;
				/* late: every connection was busy when it was due */
				if (rate && now - due > 1000000u)
					lg.st.late++;
				conn_send(&lg, c, &cur->reqs[cur_i++], due);
			}
		}
		for (unsigned k = 0; k < lg.nconns; k++)
			outstanding += lg.conns[k].busy;
		if (!sending && (outstanding == 0 || now >= drain_deadline))
			break;

		if (now >= next_report) {
			double secs = (double)(now - iv_start) / 1e9;
			long rss = pid ? rss_kb((long)pid) : -1;
			if (rss > rss_max)
				rss_max = rss;
			if (pid && rss_1min < 0 && now - start >= 60000000000u)
				rss_1min = rss;
			printf("%.0f %.0f %.0f %llu %llu %llu %.2f %.2f %.2f %u %ld\n",
			       (double)(now - start) / 1e9, (double)(lg.st.sent - last_sent) / secs,
			       (double)(lg.st.answered - last_ans) / secs,
			       (unsigned long long)lg.st.ok, (unsigned long long)lg.st.mismatch,
			       (unsigned long long)lg.st.conn_errors,
			       (double)hist_pct(&lg.st.lat_iv, 50) / 1000,
			       (double)hist_pct(&lg.st.lat_iv, 99) / 1000,
			       (double)lg.st.lat_iv.max / 1000, outstanding, rss);
			fflush(stdout);
			memset(&lg.st.lat_iv, 0, sizeof(lg.st.lat_iv));
			last_sent = lg.st.sent;
			last_ans = lg.st.answered;
			iv_start = now;
			next_report += report * 1000000000u;
		}

		int timeout_ms = 100;
		if (sending && rate) {
			uint64_t next_due = start + lg.st.sent * 1000000000u / rate;
			timeout_ms = next_due > now ? (int)((next_due - now) / 1000000u) : 0;
			if (timeout_ms > 100)
				timeout_ms = 100;
		}
		int n = epoll_wait(lg.ep, evs, (int)ARRAY_LEN(evs), timeout_ms);
		for (int i = 0; i < n; i++) {
			struct conn *c = evs[i].data.ptr;
			if (c->fd < 0)
				continue;
			if (evs[i].events & EPOLLOUT)
				conn_flush(&lg, c);
			if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
				conn_readable(&lg, c);
		}
	}
	unsigned left = 0;
	for (unsigned k = 0; k < lg.nconns; k++) {
		left += lg.conns[k].busy;
		if (lg.conns[k].busy && lg.conns[k].first && lg.conns[k].expect == 200)
			lg.st.first_ok_failed++;
		if (lg.conns[k].fd >= 0)
			close(lg.conns[k].fd);
	}
	if (pid) {
		rss_end = rss_kb((long)pid);
		if (rss_end > rss_max)
			rss_max = rss_end;
	}

	pthread_mutex_lock(&s.mu);
	s.stop = true;
	pthread_cond_broadcast(&s.cv);
	pthread_mutex_unlock(&s.mu);
	pthread_join(s.thread, NULL);
	while (s.head) {
		struct lchunk *lc = s.head;
		s.head = lc->next;
		lchunk_free(lc);
	}
	lchunk_free(cur);

	const struct stats *st = &lg.st;
	double secs = (double)duration; /* the sending window; the drain is not counted */
	printf("sent=%llu\nanswered=%llu\nunanswered=%u\nok=%llu\ns400=%llu\ns401=%llu\n"
	       "s503=%llu\nother=%llu\nmismatch=%llu\nconn_errors=%llu\nlate=%llu\n"
	       "sent_first_ok=%llu\nfirst_ok_failed=%llu\nsent_new_msg=%llu\n",
	       (unsigned long long)st->sent, (unsigned long long)st->answered, left,
	       (unsigned long long)st->ok, (unsigned long long)st->s400,
	       (unsigned long long)st->s401, (unsigned long long)st->s503,
	       (unsigned long long)st->other, (unsigned long long)st->mismatch,
	       (unsigned long long)st->conn_errors, (unsigned long long)st->late,
	       (unsigned long long)st->sent_first_ok, (unsigned long long)st->first_ok_failed,
	       (unsigned long long)st->sent_new_msg);
	printf("rate=%.1f\nok_rate=%.1f\np50_ms=%.2f\np99_ms=%.2f\np999_ms=%.2f\nmax_ms=%.2f\n",
	       (double)st->answered / secs, (double)st->ok / secs,
	       (double)hist_pct(&st->lat, 50) / 1000, (double)hist_pct(&st->lat, 99) / 1000,
	       (double)hist_pct(&st->lat, 99.9) / 1000, (double)st->lat.max / 1000);
	printf("generator_stall_ms=%.0f\nconnect_errors=%llu\n", (double)stall_ns / 1e6,
	       (unsigned long long)st->connect_errors);
	printf("rss_start_kb=%ld\nrss_1min_kb=%ld\nrss_end_kb=%ld\nrss_max_kb=%ld\n", rss_start,
	       rss_1min, rss_end, rss_max);
	free(lg.conns);
	close(lg.ep);
	return 0;
}
