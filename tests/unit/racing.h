/* SPDX-License-Identifier: MIT */
/*
 * Processes that race: race_procs() starts procs child processes one right
 * after the other, each running child(arg, out, len) to fill its len-byte
 * result (zeroed first), and collects every result into res (procs * len
 * bytes, child i's at res + i * len).  It fails the test unless every child
 * wrote its whole result and exited 0.  For start-up paths several dlrd
 * processes may run at once on one data directory (the key files).
 *
 * Include after <cmocka.h>.
 */
#ifndef DLRD_TEST_RACING_H
#define DLRD_TEST_RACING_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RACE_PROCS_MAX 16

static void race_procs(int procs, void (*child)(void *arg, uint8_t *out, size_t len), void *arg,
                       uint8_t *res, size_t len)
{
	int fds[RACE_PROCS_MAX][2];
	pid_t pids[RACE_PROCS_MAX];

	assert_true(procs > 0 && procs <= RACE_PROCS_MAX);
	for (int i = 0; i < procs; i++) {
		assert_int_equal(pipe(fds[i]), 0);
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			uint8_t *out = calloc(1, len);
			if (!out)
				_exit(1);
			child(arg, out, len);
			_exit(write(fds[i][1], out, len) == (ssize_t)len ? 0 : 1);
		}
		close(fds[i][1]);
	}
	for (int i = 0; i < procs; i++) {
		int st;
		assert_int_equal(read(fds[i][0], res + (size_t)i * len, len), (ssize_t)len);
		close(fds[i][0]);
		assert_int_equal(waitpid(pids[i], &st, 0), pids[i]);
		assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
}

#endif
