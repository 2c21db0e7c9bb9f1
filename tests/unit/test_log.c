/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for src/log.c: log_quote() escaping and truncation, level
 * parsing and filtering, and the exact shape of the lines log_msg() writes
 * (captured through a pipe put in place of stderr).
 */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "log.h"
#include "util.h"

static void test_quote_plain(void **state)
{
	char buf[64];

	(void)state;
	assert_string_equal(log_quote(buf, sizeof(buf), "abc def", 7), "\"abc def\"");
	assert_string_equal(log_quote(buf, sizeof(buf), NULL, 0), "\"\"");
	assert_string_equal(log_quote(buf, sizeof(buf), "xyz", 1), "\"x\"");
}

static void test_quote_escapes(void **state)
{
	char buf[128];
	const char in[] = "a\"b\\c\nd\re\x01\x7f\xc3\xa9\0z";

	(void)state;
	log_quote(buf, sizeof(buf), in, sizeof(in) - 1);
	assert_string_equal(buf, "\"a\\\"b\\\\c\\x0ad\\x0de\\x01\\x7f\\xc3\\xa9\\x00z\"");
	/* A forged log line stays on one line. */
	log_quote(buf, sizeof(buf), "x\nts=1 level=error", 18);
	assert_null(strchr(buf, '\n'));
	assert_string_equal(buf, "\"x\\x0ats=1 level=error\"");
}

static void test_quote_truncation(void **state)
{
	char buf[16];

	(void)state;
	/* Exactly fits: 10 bytes, quotes and NUL = 13. */
	assert_string_equal(log_quote(buf, 13, "0123456789", 10), "\"0123456789\"");
	/* One byte short: cut, and marked. */
	assert_string_equal(log_quote(buf, 12, "0123456789", 10), "\"012345...\"");
	/* An escape is never split. */
	assert_string_equal(log_quote(buf, 10, "ab\x01xyz", 6), "\"ab...\"");
	assert_string_equal(log_quote(buf, 11, "ab\x01xyz", 6), "\"ab...\"");
	assert_string_equal(log_quote(buf, 12, "ab\x01xyz", 6), "\"ab\\x01xyz\"");
	assert_string_equal(log_quote(buf, 12, "ab\x01xyzw", 7), "\"ab\\x01...\"");
	/* Tiny buffers. */
	assert_string_equal(log_quote(buf, 6, "abcdef", 6), "\"...\"");
	assert_string_equal(log_quote(buf, 5, "abcdef", 6), "\"\"");
	assert_string_equal(log_quote(buf, 3, "abcdef", 6), "\"\"");
	assert_string_equal(log_quote(buf, 2, "abcdef", 6), "\"");
	assert_string_equal(log_quote(buf, 1, "abcdef", 6), "");
	assert_string_equal(log_quote(buf, 3, "", 0), "\"\"");
}

/* Every size, every input: NUL-terminated inside size, nothing written past
 * it, and the output is a prefix-preserving quote. */
static void test_quote_bounds(void **state)
{
	const char in[] = "q\"\\\x80\x05 plain text";
	char buf[64];

	(void)state;
	for (size_t size = 1; size < 48; size++) {
		memset(buf, 'Z', sizeof(buf));
		log_quote(buf, size, in, sizeof(in) - 1);
		assert_true(strnlen(buf, size) < size);
		for (size_t i = size; i < sizeof(buf); i++)
			assert_int_equal(buf[i], 'Z');
		if (size >= 3) {
			size_t n = strlen(buf);
			assert_int_equal(buf[0], '"');
			assert_int_equal(buf[n - 1], '"');
		}
	}
	/* size 0 touches nothing. */
	memset(buf, 'Z', sizeof(buf));
	log_quote(buf, 0, in, sizeof(in) - 1);
	assert_int_equal(buf[0], 'Z');
}

/* A URL's user info never shows its password or bare token. */
static void test_url_hides_credentials(void **state)
{
	char buf[LOG_URL_MAX + 8], long_url[LOG_URL_MAX + 64];

	(void)state;
	assert_string_equal(log_url(buf, sizeof(buf), "https://sms.example.com"),
	                    "\"https://sms.example.com\"");
	assert_string_equal(log_url(buf, sizeof(buf), "https://tw:S3cret@sms.example.com:8443/x"),
	                    "\"https://tw:***@sms.example.com:8443/x\"");
	assert_string_equal(log_url(buf, sizeof(buf), "http://T0ken@h"), "\"http://***@h\"");
	/* the last '@' of the authority ends the user info; '@' in a path is data */
	assert_string_equal(log_url(buf, sizeof(buf), "https://u:p@ss@h/a@b"),
	                    "\"https://u:***@h/a@b\"");
	assert_string_equal(log_url(buf, sizeof(buf), "https://h/a@b"), "\"https://h/a@b\"");
	assert_string_equal(log_url(buf, sizeof(buf), "not a url"), "\"not a url\"");
	/* a user info longer than the buffer is cut before the password */
	memcpy(long_url, "https://", 8);
	memset(long_url + 8, 'u', LOG_URL_MAX);
	util_strlcpy(long_url + 8 + LOG_URL_MAX, ":pw@h", 16);
	log_url(buf, sizeof(buf), long_url);
	assert_null(strstr(buf, "pw"));
	assert_non_null(strstr(buf, "***@h"));
}

static void test_parse_level(void **state)
{
	enum log_level l;

	(void)state;
	assert_int_equal(log_parse_level("debug", &l), 0);
	assert_int_equal(l, LOG_DEBUG);
	assert_int_equal(log_parse_level("info", &l), 0);
	assert_int_equal(l, LOG_INFO);
	assert_int_equal(log_parse_level("warn", &l), 0);
	assert_int_equal(l, LOG_WARN);
	assert_int_equal(log_parse_level("error", &l), 0);
	assert_int_equal(l, LOG_ERROR);
	assert_int_equal(log_parse_level("INFO", &l), DLRD_EINVAL);
	assert_int_equal(log_parse_level("warning", &l), DLRD_EINVAL);
	assert_int_equal(log_parse_level("", &l), DLRD_EINVAL);
}

/* Captures what the logger writes to fd 2. */
struct capture {
	int saved;
	int rd;
};

static void capture_start(struct capture *c)
{
	int p[2];

	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	c->saved = dup(2);
	assert_true(c->saved >= 0);
	assert_int_equal(dup2(p[1], 2), 2);
	close(p[1]);
	c->rd = p[0];
}

/* Restores stderr and returns what was written (NUL-terminated). */
static size_t capture_end(struct capture *c, char *buf, size_t size)
{
	size_t n = 0;
	ssize_t r;

	assert_int_equal(dup2(c->saved, 2), 2);
	close(c->saved);
	while (n + 1 < size && (r = read(c->rd, buf + n, size - 1 - n)) > 0)
		n += (size_t)r;
	buf[n] = '\0';
	close(c->rd);
	return n;
}

static void assert_ts(const char *line)
{
	/* ts=2026-11-27T15:10:00.123Z */
	assert_memory_equal(line, "ts=", 3);
	for (size_t i = 3; i < 27; i++) {
		char c = line[i];
		switch (i - 3) {
		case 4:
		case 7:
			assert_int_equal(c, '-');
			break;
		case 10:
			assert_int_equal(c, 'T');
			break;
		case 13:
		case 16:
			assert_int_equal(c, ':');
			break;
		case 19:
			assert_int_equal(c, '.');
			break;
		case 23:
			assert_int_equal(c, 'Z');
			break;
		default:
			assert_true(c >= '0' && c <= '9');
		}
	}
	assert_int_equal(line[27], ' ');
}

static void test_msg_format(void **state)
{
	struct capture c;
	char out[4096], q[64];

	(void)state;
	log_set_level(LOG_INFO);
	capture_start(&c);
	log_msg(LOG_INFO, "listening", "addr=%s port=%d", "127.0.0.1", 8080);
	LOG_W("odd_input", "value=%s", log_quote(q, sizeof(q), "a\"b", 3));
	log_msg(LOG_ERROR, "bare", "%s", "");
	capture_end(&c, out, sizeof(out));

	char *l1 = out, *l2 = strchr(l1, '\n') + 1, *l3 = strchr(l2, '\n') + 1;
	assert_ts(l1);
	assert_ts(l2);
	assert_ts(l3);
	assert_memory_equal(l1 + 28, "level=info event=listening addr=127.0.0.1 port=8080\n", 52);
	assert_memory_equal(l2 + 28, "level=warn event=odd_input value=\"a\\\"b\"\n", 40);
	assert_string_equal(l3 + 28, "level=error event=bare\n");
}

static void test_msg_level_filter(void **state)
{
	struct capture c;
	char out[4096];

	(void)state;
	log_set_level(LOG_WARN);
	assert_false(log_enabled(LOG_INFO));
	assert_true(log_enabled(LOG_WARN));
	assert_true(log_enabled(LOG_ERROR));
	capture_start(&c);
	LOG_D("dbg", "x=%d", 1);
	LOG_I("inf", "x=%d", 2);
	LOG_W("wrn", "x=%d", 3);
	capture_end(&c, out, sizeof(out));
	assert_null(strstr(out, "event=dbg"));
	assert_null(strstr(out, "event=inf"));
	assert_non_null(strstr(out, "level=warn event=wrn x=3\n"));
	assert_int_equal(strchr(out, '\n')[1], '\0'); /* exactly one line */

	log_set_level(LOG_DEBUG);
	assert_true(log_enabled(LOG_DEBUG));
	capture_start(&c);
	LOG_D("dbg", "x=%d", 4);
	capture_end(&c, out, sizeof(out));
	assert_non_null(strstr(out, "level=debug event=dbg x=4\n"));
	log_set_level(LOG_INFO);
}

static void test_msg_long_line(void **state)
{
	struct capture c;
	char big[5000], out[8192];
	size_t n;

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	capture_start(&c);
	log_msg(LOG_ERROR, "long", "v=%s", big);
	log_msg(LOG_ERROR, "after", "ok=1");
	n = capture_end(&c, out, sizeof(out));
	/* First line: cut at 2048 bytes including its newline, ends in "...". */
	char *nl = strchr(out, '\n');
	assert_int_equal(nl - out + 1, 2048);
	assert_memory_equal(nl - 3, "...", 3);
	assert_int_equal(nl[-4], 'x');
	assert_non_null(strstr(nl + 1, "level=error event=after ok=1\n"));
	assert_int_equal(out[n - 1], '\n');
}

static void test_msg_control_bytes(void **state)
{
	struct capture c;
	char out[4096];

	(void)state;
	capture_start(&c);
	/* A caller that forgot log_quote cannot split the line. */
	log_msg(LOG_INFO, "raw", "v=%s", "a\nts=x level=error\r\tb");
	capture_end(&c, out, sizeof(out));
	assert_non_null(strstr(out, "event=raw v=a?ts=x level=error??b\n"));
	assert_int_equal(strchr(out, '\n')[1], '\0');
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_quote_plain),       cmocka_unit_test(test_quote_escapes),
	    cmocka_unit_test(test_quote_truncation),  cmocka_unit_test(test_quote_bounds),
	    cmocka_unit_test(test_parse_level),       cmocka_unit_test(test_msg_format),
	    cmocka_unit_test(test_msg_level_filter),  cmocka_unit_test(test_msg_long_line),
	    cmocka_unit_test(test_msg_control_bytes), cmocka_unit_test(test_url_hides_credentials),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
