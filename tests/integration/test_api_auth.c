/* SPDX-License-Identifier: MIT */
/*
 * Integration: access to the JSON API.  For every route and every caller
 * (no token, a malformed header, an unknown token, and each role) the exact
 * status: 401 with a JSON error and WWW-Authenticate for no or an unknown
 * token, 403 for a role too weak, and the endpoint's success status for the
 * roles that may use it.  Also: /openapi.json is served without a token and
 * is byte-for-byte docs/openapi.json; unknown /v1/ paths are a JSON 404, a
 * wrong method a JSON 405 with Allow; webhook paths ignore bearer tokens and
 * keep their own signatures; with no tokens configured every /v1/ request
 * is 401.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "api_helpers.h"

static int setup(void **state)
{
	const char *env[] = {api_tokens_env(), NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

enum who { W_NONE, W_WRONG, W_MALFORMED, W_APP, W_VIEWER, W_SUPPORT, W_ADMIN, W__COUNT };

static const char *token_of(enum who w)
{
	switch (w) {
	case W_APP:
		return T_APP;
	case W_VIEWER:
		return T_VIEWER;
	case W_SUPPORT:
		return T_SUPPORT;
	case W_ADMIN:
		return T_ADMIN;
	case W_WRONG:
		return T_WRONG;
	default:
		return NULL;
	}
}

/* One call as w; a malformed header is "Authorization: Token <admin>". */
static long call_as(struct dlrd *d, enum who w, const char *method, const char *target,
                    const char *body, const char *key, struct h_resp *r)
{
	char idem[128];
	const char *extra[3] = {NULL, NULL, NULL};
	size_t n = 0;
	if (key) {
		util_fmt(idem, sizeof(idem), "Idempotency-Key: %s", key);
		extra[n++] = idem;
	}
	if (w == W_MALFORMED)
		extra[n++] = "Authorization: Token " T_ADMIN;
	return api_call(d, method, target, token_of(w), body, extra, r);
}

static void test_role_matrix(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char body[1024], target[256], sid[35], form[1024], code[64], key[64];
	json_t *j;

	/* a message with a number, and a review item (unknown status) */
	api_send_body(body, sizeof(body), N_TO, NULL, "otp", NULL);
	assert_int_equal(api_send(d, T_APP, "setup-1", body, &r), 201);
	j = api_json(&r);
	char id[40];
	util_strlcpy(id, jpath_s(j, "id"), sizeof(id));
	json_decref(j);
	h_sid(sid, 77, 1);
	assert_true(h_twilio_body(form, sizeof(form), sid, "bogus_status", NULL) > 0);
	assert_int_equal(h_post_status(d, form, &r), 200);
	int64_t review_id = h_sql_int(d, "SELECT max(id) FROM review_queue");
	assert_true(review_id > 0);

	/* expected status per route and caller; 0 = 401, 1 = 403 */
	static const struct {
		const char *method;
		const char *path; /* {id}: the message id, or the review id */
		int kind;         /* 0 message, 1 review, 2 none */
		const char *body;
		bool idem;
		long want[W__COUNT];
	} cases[] = {
	    {"POST", "/v1/messages", 2, "SEND", true, {401, 401, 401, 201, 403, 403, 201}},
	    {"GET", "/v1/messages", 2, NULL, false, {401, 401, 401, 403, 200, 200, 200}},
	    {"GET", "/v1/messages/{id}", 0, NULL, false, {401, 401, 401, 403, 200, 200, 200}},
	    {"PATCH",
	     "/v1/messages/{id}",
	     0,
	     "{\"provider_message_id\":\"SM00000000000000000000000000000001\"}",
	     false,
	     {401, 401, 401, 200, 403, 403, 200}},
	    {"GET",
	     "/v1/messages/{id}/timeline",
	     0,
	     NULL,
	     false,
	     {401, 401, 401, 403, 200, 200, 200}},
	    {"POST",
	     "/v1/messages/{id}/reveal",
	     0,
	     "{\"reason\":\"matrix test\"}",
	     false,
	     {401, 401, 401, 403, 403, 200, 200}},
	    {"GET", "/v1/review", 2, NULL, false, {401, 401, 401, 403, 403, 403, 200}},
	    {"POST",
	     "/v1/review/{id}/resolve",
	     1,
	     "{\"note\":\"matrix\"}",
	     false,
	     {401, 401, 401, 403, 403, 403, 200}},
	    {"GET", "/v1/audit", 2, NULL, false, {401, 401, 401, 403, 403, 403, 200}},
	    {"GET", "/openapi.json", 2, NULL, false, {200, 200, 200, 200, 200, 200, 200}},
	};
	for (size_t c = 0; c < ARRAY_LEN(cases); c++) {
		for (int w = 0; w < W__COUNT; w++) {
			const char *b = cases[c].body;
			/* the path with its {id} filled in */
			const char *hole = strchr(cases[c].path, '{');
			if (hole) {
				char idtxt[40];
				if (cases[c].kind == 0)
					util_strlcpy(idtxt, id, sizeof(idtxt));
				else
					util_fmt(idtxt, sizeof(idtxt), "%lld",
					         (long long)review_id);
				util_fmt(target, sizeof(target), "%.*s%s%s",
				         (int)(hole - cases[c].path), cases[c].path, idtxt,
				         strchr(hole, '}') + 1);
			} else {
				util_strlcpy(target, cases[c].path, sizeof(target));
			}
			if (b && strcmp(b, "SEND") == 0)
				b = body;
			util_fmt(key, sizeof(key), "matrix-%zu-%d", c, w);
			long st = call_as(d, (enum who)w, cases[c].method, target, b,
			                  cases[c].idem ? key : NULL, &r);
			if (st != cases[c].want[w])
				fail_msg("%s %s as caller %d: %ld, want %ld: %s", cases[c].method,
				         cases[c].path, w, st, cases[c].want[w], r.body);
			if (st == 401 || st == 403) {
				assert_string_equal(r.content_type, "application/json");
				assert_string_equal(api_error_code(&r, code, sizeof(code)),
				                    st == 401 ? "unauthorized" : "forbidden");
			}
		}
	}
	/* every 401 told how to authenticate */
	call_as(d, W_NONE, "GET", "/v1/messages", NULL, NULL, &r);
	assert_int_equal(r.status, 401);
	/* the refused writes wrote nothing: two sends (app and admin) + setup */
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM sms_messages WHERE origin = 'send'"),
	                 3);
	/* the reveals by support and admin were audited, nothing else */
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM audit_log WHERE action = 'reveal'"), 2);
	assert_int_equal(h_sql_int(d, "SELECT count(*) FROM audit_log WHERE action ="
	                              " 'review_resolve'"),
	                 1);
	/* the log names roles and token ids, never a token */
	assert_false(h_log_contains(d, T_ADMIN));
	assert_false(h_log_contains(d, "test-admin-token"));
	assert_true(h_log_contains(d, "event=api_denied route=reveal status=403"));
}

static void test_www_authenticate_and_errors(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char code[64];

	/* libcurl keeps only some headers: check WWW-Authenticate on a raw socket */
	char buf[4096];
	bool closed;
	const char req[] = "GET /v1/messages HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	size_t n = h_raw(d, req, sizeof(req) - 1, buf, sizeof(buf), 3000, &closed);
	assert_true(n != (size_t)-1);
	assert_non_null(strstr(buf, "HTTP/1.1 401"));
	assert_non_null(strstr(buf, "WWW-Authenticate: Bearer realm=\"dlrd\""));
	assert_non_null(strstr(buf, "\"code\":\"unauthorized\""));

	assert_int_equal(api_call(d, "GET", "/v1/nothing", T_ADMIN, NULL, NULL, &r), 404);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "not_found");
	assert_int_equal(api_call(d, "GET", "/v1/messages/", T_ADMIN, NULL, NULL, &r), 404);
	assert_int_equal(api_call(d, "DELETE", "/v1/messages", T_ADMIN, NULL, NULL, &r), 405);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "method_not_allowed");
	assert_string_equal(r.allow, "POST, GET");
	assert_int_equal(api_call(d, "PUT", "/v1/audit", NULL, NULL, NULL, &r), 405);
	assert_string_equal(r.allow, "GET");
	/* a message id that cannot exist */
	assert_int_equal(api_call(d, "GET", "/v1/messages/not-a-uuid", T_VIEWER, NULL, NULL, &r),
	                 404);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "message_not_found");
	assert_int_equal(api_call(d, "GET", "/v1/messages/01a21dbe-10c7-77c1-8add-78a55b904a2a",
	                          T_VIEWER, NULL, NULL, &r),
	                 404);
	assert_string_equal(api_error_code(&r, code, sizeof(code)), "message_not_found");
}

/* The answers given before routing (a target too long, too many headers,
 * headers too large, broken framing, a bad header name or value) reach an API client as the API's
 * JSON error object, and a webhook client as text; both close the connection. */
static void test_early_errors_as_json(void **state)
{
	struct dlrd *d = *state;
	static char req[32768], buf[4096];
	static const struct {
		const char *code, *status;
	} want[] = {
	    {"\"code\":\"uri_too_long\"", "HTTP/1.1 414"},
	    {"\"code\":\"too_many_headers\"", "HTTP/1.1 431"},
	    {"\"code\":\"bad_framing\"", "HTTP/1.1 400"},
	    {"\"code\":\"bad_header_name\"", "HTTP/1.1 400"},
	    {"\"code\":\"headers_too_large\"", "HTTP/1.1 431"},
	    {"\"code\":\"bad_header_value\"", "HTTP/1.1 400"},
	};
	bool closed;
	size_t n, at;

	for (int api = 1; api >= 0; api--) {
		const char *path = api ? "/v1/messages" : "/webhooks/twilio/status";
		for (size_t i = 0; i < ARRAY_LEN(want); i++) {
			at = (size_t)snprintf(req, sizeof(req), "GET %s", path);
			if (i == 0) { /* past the 8 KiB target limit */
				at += (size_t)snprintf(req + at, sizeof(req) - at, "?q=");
				memset(req + at, 'a', 9000);
				at += 9000;
			}
			at += (size_t)snprintf(req + at, sizeof(req) - at,
			                       " HTTP/1.1\r\nHost: x\r\n");
			if (i == 1)
				for (int k = 0; k < 120; k++)
					at += (size_t)snprintf(req + at, sizeof(req) - at,
					                       "X-H%d: v\r\n", k);
			if (i == 2)
				at +=
				    (size_t)snprintf(req + at, sizeof(req) - at,
				                     "Content-Length: 1\r\nContent-Length: 2\r\n");
			if (i == 3)
				at += (size_t)snprintf(req + at, sizeof(req) - at,
				                       "Content-Length : 0\r\n");
			if (i == 4) { /* one header past the 16 KiB of all of them */
				at += (size_t)snprintf(req + at, sizeof(req) - at, "X-Big: ");
				memset(req + at, 'b', 17000);
				at += 17000;
				at += (size_t)snprintf(req + at, sizeof(req) - at, "\r\n");
			}
			if (i == 5)
				at += (size_t)snprintf(req + at, sizeof(req) - at, "X-A: 1\r2\r\n");
			at += (size_t)snprintf(req + at, sizeof(req) - at, "\r\n");
			n = h_raw(d, req, at, buf, sizeof(buf), 3000, &closed);
			assert_true(n != (size_t)-1);
			assert_true(closed);
			assert_non_null(strstr(buf, want[i].status));
			if (api) {
				assert_non_null(strstr(buf, "Content-Type: application/json"));
				assert_non_null(strstr(buf, want[i].code));
			} else {
				assert_null(strstr(buf, "application/json"));
			}
		}
	}
	assert_int_equal(h_get(d, "/healthz", &(struct h_resp){0}), 200);
}

static void test_openapi_served(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	const char *suffix = "tests/integration/test_api_auth.c";
	char path[1024];
	size_t n = strlen(__FILE__), sn = strlen(suffix), len;

	assert_int_equal(h_get(d, "/openapi.json", &r), 200);
	assert_string_equal(r.content_type, "application/json");
	/* (the unit test test_api_contract parses it; here it is too long for
	 * the harness's buffer, so prefix and length are compared) */
	assert_non_null(strstr(r.body, "\"openapi\": \"3.1.0\""));
	if (n < sn || strcmp(__FILE__ + n - sn, suffix) != 0)
		skip();
	util_fmt(path, sizeof(path), "%.*sdocs/openapi.json", (int)(n - sn), __FILE__);
	char *doc = h_read_file(path, &len);
	assert_non_null(doc);
	assert_int_equal(r.body_len, len);
	assert_memory_equal(r.body, doc, len < sizeof(r.body) ? len : sizeof(r.body) - 1);
	free(doc);
}

static void test_webhooks_ignore_bearer(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;
	char sid[35], form[1024];
	const char *bearer[] = {"Authorization: Bearer " T_ADMIN, NULL};

	h_sid(sid, 78, 1);
	assert_true(h_twilio_body(form, sizeof(form), sid, "sent", NULL) > 0);
	/* unsigned: a bearer token does not stand in for the signature */
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, NULL, form, bearer, &r), 401);
	/* signed: a bearer token changes nothing */
	assert_int_equal(h_post_twilio(d, H_STATUS_PATH, H_TOKEN1, form, bearer, &r), 200);
	assert_int_equal(h_sql_int(d,
	                           "SELECT count(*) FROM sms_messages WHERE"
	                           " provider_message_id = %Q",
	                           sid),
	                 1);
}

static void test_no_tokens_configured(void **state)
{
	struct dlrd d2;
	struct h_resp r;
	/* privacy.encryption_keys unset too */
	const char *env[] = {"DLRD_PRIVACY_ENCRYPTION_KEYS", NULL};
	(void)state;

	assert_int_equal(h_setup(&d2, env), 0);
	assert_int_equal(h_start(&d2), 0);
	assert_int_equal(api_call(&d2, "GET", "/v1/messages", T_ADMIN, NULL, NULL, &r), 401);
	assert_int_equal(h_get(&d2, "/openapi.json", &r), 200);
	assert_true(h_log_contains(&d2, "event=api_disabled"));
	/* no API, but raw payloads are stored sealed all the same: the key
	 * file is made at start-up */
	char path[H_PATH_MAX + 32];
	util_fmt(path, sizeof(path), "%s/encryption.keys", d2.dir);
	assert_int_equal(access(path, F_OK), 0);
	assert_true(h_log_contains(&d2, "event=encryption_keys_created"));
	h_teardown(&d2);
}

static void test_bad_token_config(void **state)
{
	struct dlrd d2;
	int st;
	(void)state;
	const char *env[] = {"DLRD_API_TOKENS=admin:sha256:1234", NULL};

	assert_int_equal(h_setup(&d2, env), 0);
	assert_int_equal(h_spawn(&d2), 0);
	assert_int_equal(h_wait_exit(&d2, 10000, &st), 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) != 0);
	assert_true(h_log_contains(&d2, "api.tokens: entry 1"));
	assert_false(h_log_contains(&d2, "sha256:1234"));
	h_teardown(&d2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_role_matrix, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_www_authenticate_and_errors, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_early_errors_as_json, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_openapi_served, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_webhooks_ignore_bearer, setup, teardown),
	    cmocka_unit_test(test_no_tokens_configured),
	    cmocka_unit_test(test_bad_token_config),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
