/* SPDX-License-Identifier: MIT */
/*
 * Integration: many keep-alive connections ready at once.
 *
 * libmicrohttpd 0.9.75 drains epoll with "while 128 events came back, call
 * epoll_wait() again" using the timeout it computed before the first call,
 * so a worker thread that gets exactly 128 events waits again before it has
 * served any of them; its connections are edge-triggered and not reported
 * again, and it sleeps until some other event or a connection's idle
 * timeout (30 s) while every one of those clients waits.  http.c keeps each
 * worker below 128 connections (threads_for_connections()).
 *
 * The test makes that moment happen: it opens 256 connections, finds which
 * worker holds each (each worker's epoll set in /proc/PID/fdinfo, tied to
 * our sockets by inode through /proc/net/tcp), stops dlrd (SIGSTOP, and
 * waits until every thread is stopped), sends one callback on each of 128
 * connections of the fullest worker, lets dlrd go on, and wants every
 * answer within 5 s.  On the old code (two workers, the fullest holding
 * 171-196 of the 256) no answer came in 3 runs of 3.  It also checks the
 * bound that rules the hang out: no worker holds 126 connections or more.
 */
#include <dirent.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "harness.h"
#include "util.h"

#define N_CONNS    256
#define N_READY    128
#define MAX_EPOLLS 64
#define ANSWER_MS  5000

struct epoll_set {
	unsigned long inodes[N_CONNS + 8];
	size_t n;
};

/* The inodes of the sockets in each of dlrd's epoll sets. */
static size_t read_epoll_sets(pid_t pid, struct epoll_set *sets, size_t max)
{
	char path[128], link[128], line[256];
	size_t n = 0;
	struct dirent *de;

	util_fmt(path, sizeof(path), "/proc/%d/fd", (int)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return 0;
	while ((de = readdir(dir)) && n < max) {
		char fdpath[300];
		util_fmt(fdpath, sizeof(fdpath), "%s/%s", path, de->d_name);
		ssize_t k = readlink(fdpath, link, sizeof(link) - 1);
		if (k <= 0)
			continue;
		link[k] = '\0';
		if (strcmp(link, "anon_inode:[eventpoll]") != 0)
			continue;
		util_fmt(fdpath, sizeof(fdpath), "/proc/%d/fdinfo/%s", (int)pid, de->d_name);
		FILE *f = fopen(fdpath, "r");
		if (!f)
			continue;
		sets[n].n = 0;
		while (fgets(line, sizeof(line), f)) {
			const char *ino = strstr(line, " ino:");
			if (strncmp(line, "tfd:", 4) == 0 && ino &&
			    sets[n].n < ARRAY_LEN(sets[n].inodes))
				sets[n].inodes[sets[n].n++] = strtoul(ino + 5, NULL, 16);
		}
		fclose(f);
		n++;
	}
	closedir(dir);
	return n;
}

/* For each client port, the inode of dlrd's end of that connection (0:
 * none seen, e.g. not accepted yet: a socket in the accept queue has no
 * inode).  One pass over /proc/net/tcp. */
static void read_server_inodes(uint16_t server_port, unsigned long *by_client_port)
{
	char line[512];
	FILE *f = fopen("/proc/net/tcp", "r");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		/* sl local rem st tx:rx tr:when retrnsmt uid timeout inode */
		char *field[10], *save = NULL, *tok = strtok_r(line, " \t\n", &save);
		int n = 0;
		for (; tok && n < 10; tok = strtok_r(NULL, " \t\n", &save))
			field[n++] = tok;
		if (n < 10 || !strchr(field[1], ':') || !strchr(field[2], ':'))
			continue;
		unsigned long lport = strtoul(strchr(field[1], ':') + 1, NULL, 16);
		unsigned long rport = strtoul(strchr(field[2], ':') + 1, NULL, 16);
		unsigned long inode = strtoul(field[9], NULL, 10);
		if (lport == server_port && rport < 65536 && inode)
			by_client_port[rport] = inode;
	}
	fclose(f);
}

static uint16_t local_port(int fd)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	if (getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		return 0;
	return ntohs(sa.sin_port);
}

/* Which epoll set holds the socket with this inode; -1 if none (yet). */
static int set_of(const struct epoll_set *sets, size_t n_sets, unsigned long inode)
{
	for (size_t s = 0; s < n_sets; s++)
		for (size_t i = 0; i < sets[s].n; i++)
			if (sets[s].inodes[i] == inode)
				return (int)s;
	return -1;
}

/* true once every thread of pid is stopped (state T in its stat) */
static bool all_stopped(pid_t pid)
{
	char path[128], st[512];
	struct dirent *de;
	bool all = true;

	util_fmt(path, sizeof(path), "/proc/%d/task", (int)pid);
	DIR *dir = opendir(path);
	if (!dir)
		return false;
	while (all && (de = readdir(dir))) {
		if (de->d_name[0] == '.')
			continue;
		char p[300];
		util_fmt(p, sizeof(p), "%s/%s/stat", path, de->d_name);
		FILE *f = fopen(p, "r");
		const char *close_paren = NULL;
		if (f && fgets(st, sizeof(st), f))
			close_paren = strrchr(st, ')');
		if (f)
			fclose(f);
		/* "pid (comm) S ...": the state follows the command's ')' */
		if (close_paren && close_paren[1] == ' ' && close_paren[2] != 'T' &&
		    close_paren[2] != 't')
			all = false;
	}
	closedir(dir);
	return all;
}

static int setup(void **state)
{
	return h_fixture_start(state, NULL);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void test_many_connections_ready_at_once(void **state)
{
	struct dlrd *d = *state;
	static int fds[N_CONNS], owner[N_CONNS];
	static uint16_t port[N_CONNS];
	static struct epoll_set sets[MAX_EPOLLS];
	size_t n_sets = 0, counts[MAX_EPOLLS] = {0};

	for (int i = 0; i < N_CONNS; i++) {
		fds[i] = h_connect(d->port);
		assert_true(fds[i] >= 0);
		port[i] = local_port(fds[i]);
	}
	/* MHD accepts in rounds of ten, and a socket not yet accepted has no
	 * inode: wait until every connection is in some worker's epoll set */
	static unsigned long by_port[65536];
	int64_t until = h_now_ms() + 10000;
	for (;;) {
		int missing = 0;
		read_server_inodes(d->port, by_port);
		n_sets = read_epoll_sets(d->pid, sets, MAX_EPOLLS);
		for (int i = 0; i < N_CONNS; i++)
			if ((owner[i] = set_of(sets, n_sets, by_port[port[i]])) < 0)
				missing++;
		if (!missing)
			break;
		if (h_now_ms() >= until)
			fail_msg("%d of %d connections in no epoll set of dlrd's", missing,
			         N_CONNS);
		h_sleep_ms(20);
	}
	/* let the workers take the first events of the connections they just
	 * accepted, so that only the burst below is pending */
	h_sleep_ms(1000);
	size_t full = 0;
	for (int i = 0; i < N_CONNS; i++)
		counts[owner[i]]++;
	for (size_t s = 1; s < n_sets; s++)
		if (counts[s] > counts[full])
			full = s;
	print_message("%zu epoll sets; the fullest holds %zu of %d connections\n", n_sets,
	              counts[full], N_CONNS);

	/* up to 128 connections of that worker get a request while dlrd is
	 * stopped, so that they are all ready when it goes on */
	static char req[N_READY][2048];
	static size_t req_len[N_READY];
	int chosen[N_READY], n = 0;
	for (int i = 0; i < N_CONNS && n < N_READY; i++) {
		if (owner[i] != (int)full)
			continue;
		char sid[35], body[512];
		h_sid(sid, 77, (unsigned)i);
		assert_true(h_twilio_body(body, sizeof(body), sid, "delivered", NULL) > 0);
		req_len[n] = h_raw_status_post(req[n], sizeof(req[n]), body, false);
		assert_true(req_len[n] > 0);
		chosen[n++] = i;
	}
	/* every thread stopped before the first byte arrives, or a worker
	 * still running takes the first requests one by one */
	assert_int_equal(kill(d->pid, SIGSTOP), 0);
	int64_t stop_until = h_now_ms() + 2000;
	while (!all_stopped(d->pid) && h_now_ms() < stop_until)
		h_sleep_ms(5);
	assert_true(all_stopped(d->pid));
	for (int k = 0; k < n; k++)
		assert_int_equal(h_send_all(fds[chosen[k]], req[k], req_len[k]), 0);
	h_sleep_ms(200);
	assert_int_equal(kill(d->pid, SIGCONT), 0);

	/* every answer within 5 s */
	static char buf[N_READY][1024];
	size_t got[N_READY] = {0};
	int answered = 0, ok = 0;
	bool done[N_READY] = {false};
	until = h_now_ms() + ANSWER_MS;
	while (answered < n && h_now_ms() < until) {
		struct pollfd pfd[N_READY];
		int map[N_READY], m = 0;
		for (int k = 0; k < n; k++)
			if (!done[k]) {
				pfd[m] = (struct pollfd){.fd = fds[chosen[k]], .events = POLLIN};
				map[m++] = k;
			}
		int64_t left = until - h_now_ms();
		if (poll(pfd, (nfds_t)m, left > 0 ? (int)left : 0) <= 0)
			break;
		for (int j = 0; j < m; j++) {
			int k = map[j];
			if (!(pfd[j].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t r =
			    recv(pfd[j].fd, buf[k] + got[k], sizeof(buf[k]) - 1 - got[k], 0);
			if (r <= 0) {
				done[k] = true;
				answered++;
				continue;
			}
			got[k] += (size_t)r;
			buf[k][got[k]] = '\0';
			if (strstr(buf[k], "\r\n\r\n")) { /* 200 answers have no body to speak of */
				done[k] = true;
				answered++;
				if (strncmp(buf[k], "HTTP/1.1 200", 12) == 0)
					ok++;
			}
		}
	}
	print_message("%d of %d answered within %d ms, %d with 200\n", answered, n, ANSWER_MS, ok);
	for (int i = 0; i < N_CONNS; i++)
		close(fds[i]);
	assert_int_equal(answered, n);
	assert_int_equal(ok, n);
	assert_int_equal(h_count(d, "sms_message_events"), n);
	/* and why: a worker's connections, its listening socket and its
	 * wake-up eventfd stay below the 128 events MHD asks epoll_wait() for */
	assert_true(counts[full] + 2 < 128);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_many_connections_ready_at_once, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
