/* SPDX-License-Identifier: MIT */
/*
 * The API's contract: the OpenAPI document embedded in the binary
 * (docs/openapi.json) is OpenAPI 3.1, and its paths and methods are exactly
 * the routes of the API's route table, both ways.  Also the path matcher
 * the routes rely on, and which paths the API owns.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <cmocka.h>
#include <fcntl.h>
#include <unistd.h>

#include "api.c"

static void test_document_is_openapi_31(void **state)
{
	json_error_t jerr;
	json_t *doc = json_loadb((const char *)api_openapi_json, api_openapi_json_len, 0, &jerr);
	(void)state;
	if (!doc)
		fail_msg("docs/openapi.json: %s (line %d)", jerr.text, jerr.line);
	assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
	assert_non_null(json_object_get(
	    json_object_get(json_object_get(doc, "components"), "securitySchemes"), "bearer"));
	json_decref(doc);
}

static void test_routes_match_document(void **state)
{
	json_t *doc = json_loadb((const char *)api_openapi_json, api_openapi_json_len, 0, NULL);
	json_t *paths = json_object_get(doc, "paths"), *ops;
	const char *path, *m;
	json_t *v;
	size_t documented = 0;
	(void)state;

	assert_non_null(paths);
	/* every route is documented */
	for (size_t i = 0; i < api_route_count(); i++) {
		const char *method, *pattern;
		char lower[16];
		api_route(i, &method, &pattern);
		util_strlcpy(lower, method, sizeof(lower));
		for (char *c = lower; *c; c++)
			*c = (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c);
		ops = json_object_get(paths, pattern);
		if (!ops || !json_object_get(ops, lower))
			fail_msg("route %s %s is not in docs/openapi.json", method, pattern);
		assert_non_null(json_object_get(json_object_get(ops, lower), "responses"));
	}
	/* every documented operation is a route */
	json_object_foreach(paths, path, ops)
	{
		json_object_foreach(ops, m, v)
		{
			if (strcmp(m, "parameters") == 0 || strcmp(m, "summary") == 0 ||
			    strcmp(m, "description") == 0)
				continue;
			bool found = false;
			for (size_t i = 0; i < api_route_count() && !found; i++) {
				const char *method, *pattern;
				api_route(i, &method, &pattern);
				found = strcmp(pattern, path) == 0 && strcasecmp(method, m) == 0;
			}
			if (!found)
				fail_msg("docs/openapi.json has %s %s, which no route serves", m,
				         path);
			documented++;
		}
	}
	assert_int_equal(documented, api_route_count());
	json_decref(doc);
}

/* The providers a send may name are documented by the names the API takes
 * (provider_find()), all of them and no other: the document once said
 * "vonage_messages", which POST /v1/messages answers with 422. */
static void test_send_providers_match_document(void **state)
{
	json_t *doc = json_loadb((const char *)api_openapi_json, api_openapi_json_len, 0, NULL);
	json_t *prov = json_object_get(
	    json_object_get(
	        json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"),
	                        "SendRequest"),
	        "properties"),
	    "provider");
	json_t *names = json_object_get(prov, "enum"), *v;
	size_t i;
	(void)state;

	if (!json_is_array(names))
		fail_msg("SendRequest.provider has no enum of the provider names");
	json_array_foreach(names, i, v)
	{
		const char *n = json_string_value(v);
		if (!n || !provider_find(n, strlen(n)))
			fail_msg("SendRequest.provider lists %s, which the API refuses",
			         n ? n : "a non-string");
	}
	assert_int_equal(json_array_size(names), provider_count());
	json_decref(doc);
}

/* A write's answer and GET describe the same row's origin, so they list
 * the same values: PATCH of a message only callbacks made (the documented
 * no-op with its own provider id) answers origin "callback". */
static void test_write_origin_matches_message(void **state)
{
	json_t *doc = json_loadb((const char *)api_openapi_json, api_openapi_json_len, 0, NULL);
	json_t *schemas = json_object_get(json_object_get(doc, "components"), "schemas");
	json_t *w = json_object_get(
	    json_object_get(json_object_get(json_object_get(schemas, "WriteResult"), "properties"),
	                    "origin"),
	    "enum");
	json_t *m = json_object_get(
	    json_object_get(json_object_get(json_object_get(schemas, "Message"), "properties"),
	                    "origin"),
	    "enum");
	(void)state;

	assert_true(json_is_array(w) && json_is_array(m));
	if (!json_equal(w, m)) {
		char *a = json_dumps(w, JSON_COMPACT), *b = json_dumps(m, JSON_COMPACT);
		fail_msg("WriteResult.origin %s, Message.origin %s", a, b);
	}
	json_decref(doc);
}

static void test_match(void **state)
{
	struct iov id = {NULL, 0};
	(void)state;
	assert_true(match("/v1/messages/{id}", IOV_LIT("/v1/messages/abc"), &id));
	assert_true(iov_eq(id, "abc"));
	assert_true(match("/v1/messages/{id}/timeline", IOV_LIT("/v1/messages/x/timeline"), &id));
	assert_true(iov_eq(id, "x"));
	assert_false(match("/v1/messages/{id}", IOV_LIT("/v1/messages/"), &id));
	assert_false(match("/v1/messages/{id}", IOV_LIT("/v1/messages/a/b"), &id));
	assert_false(match("/v1/messages", IOV_LIT("/v1/messages/"), &id));
	assert_false(match("/v1/messages", IOV_LIT("/v1/message"), &id));
	assert_false(match("/v1/messages", IOV_LIT("/v1/messagesX"), &id));
	assert_true(match("/v1/audit", IOV_LIT("/v1/audit"), &id));
	assert_true(api_owns(IOV_LIT("/v1/anything")));
	assert_true(api_owns(IOV_LIT("/openapi.json")));
	assert_false(api_owns(IOV_LIT("/v10/x")));
	assert_false(api_owns(IOV_LIT("/webhooks/twilio/status")));
}

static void test_cursor_and_canonical(void **state)
{
	char buf[512], key[64];
	struct arena a;
	(void)state;
	arena_init(&a, buf, sizeof(buf));
	const char *c = cursor_encode(&a, 'm', "01a21dbe-10c7-77c1-8add-78a55b904a2a");
	assert_null(strchr(c, '='));
	assert_int_equal(cursor_decode(c, strlen(c), 'm', key, sizeof(key)), 0);
	assert_string_equal(key, "01a21dbe-10c7-77c1-8add-78a55b904a2a");
	assert_int_equal(cursor_decode(c, strlen(c), 'r', key, sizeof(key)), -1);
	assert_int_equal(cursor_decode("!!", 2, 'm', key, sizeof(key)), -1);
	assert_string_equal(canonical_pmid(&a, "twilio", "smABCDEF0123456789ABCDEF0123456789", 34),
	                    "SMabcdef0123456789abcdef0123456789");
	assert_string_equal(canonical_pmid(&a, "sinch", "01abc", 5), "01ABC");
	assert_string_equal(canonical_pmid(&a, "telnyx", "AB-CD", 5), "ab-cd");
	assert_string_equal(canonical_pmid(&a, "generic", "AbC", 3), "AbC");
	assert_true(e164("+14155550123", 12));
	assert_false(e164("14155550123", 11));
	assert_false(e164("+0415555012", 11));
	assert_true(e164("+6834001", 8)); /* Niue: 7 digits */
	assert_false(e164("+683400", 7));
	assert_false(e164("+1415555012345678", 17));
	assert_false(e164("+1415 555 0123", 14));
	arena_fini(&a);
}

/* A reveal whose batch did not become durable (a failed commit, or the
 * sync that must cover it) is answered 503, and the number its writer
 * decrypted is wiped there, as PostgreSQL's writer wipes it from a failed
 * attempt: it must not stay in the request's memory, freed unwiped. */
static void test_failed_reveal_wipes_number(void **state)
{
	static const char zero[sizeof(((struct store_op *)0)->number)];
	struct api_state s;
	struct commit_item it;
	struct api_answer ans;
	(void)state;

	memset(&s, 0, sizeof(s));
	memset(&it, 0, sizeof(it));
	for (size_t i = 0; i < ARRAY_LEN(routes); i++)
		if (routes[i].id == R_MSG_REVEAL)
			s.route = &routes[i];
	s.op.kind = STORE_OP_REVEAL;
	s.op.outcome = STORE_DONE;
	util_strlcpy(s.op.number, "+447700900123", sizeof(s.op.number));
	it.kind = CI_API;
	it.op = &s.op;
	it.result = DLRD_EIO;
	api_finish(NULL, &s, &it, &ans);
	assert_int_equal(ans.status, 503);
	assert_null(strstr(ans.body, "7700900123"));
	assert_memory_equal(s.op.number, zero, sizeof(zero));
	free(ans.body);
}

/* A failed read is logged with the storage's error text, which is not ours:
 * libpq's messages quote host names and end in a newline.  The line must stay
 * one logfmt line whose error value reads back as that text.  Before the fix
 * the text was put between quotes unescaped: error="... at "10.0.0.5", ..."
 * ended the value at the host's first quote. */
static void test_read_failure_logged_as_logfmt(void **state)
{
	static const char pg_err[] =
	    "postgresql: connection to server at \"10.0.0.5\", port 5432 failed: \\ refused\n";
	struct api_answer ans;
	char buf[4096], *line, *v;
	int p[2], saved;
	ssize_t n;
	(void)state;

	memset(&ans, 0, sizeof(ans));
	assert_int_equal(pipe(p), 0);
	assert_int_equal(fcntl(p[0], F_SETFL, O_NONBLOCK), 0);
	saved = dup(2);
	assert_true(saved >= 0);
	assert_int_equal(dup2(p[1], 2), 2);
	close(p[1]);
	ans_store_error(&ans, DLRD_EIO, "timeline", pg_err);
	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	n = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	assert_true(n > 0);
	buf[n] = '\0';
	assert_int_equal(ans.status, 503);
	if (!ans.body_static)
		free(ans.body);

	/* one line, ending in its only newline */
	line = buf;
	assert_ptr_equal(strchr(line, '\n'), line + n - 1);
	assert_non_null(strstr(line, " event=api_read_failed what=timeline error=\""));
	/* the quoted value runs to the end of the line and unescapes to the
	 * error text (its newline as \x0a) */
	v = strstr(line, " error=\"") + 7;
	char got[512];
	size_t o = 0;
	for (v++; *v && *v != '"'; v++) {
		assert_true(o + 1 < sizeof(got));
		if (*v == '\\' && v[1] == 'x') {
			char hx[3] = {v[2], v[3], '\0'};
			got[o++] = (char)strtol(hx, NULL, 16);
			v += 3;
		} else if (*v == '\\') {
			got[o++] = *++v;
		} else {
			got[o++] = *v;
		}
	}
	got[o] = '\0';
	assert_int_equal(*v, '"');
	assert_string_equal(v + 1, "\n");
	assert_string_equal(got, pg_err);
}
/* api.optout_exempt_use_cases lists use cases, which a send's use_case
 * must match exactly: an item no use_case can be ("legal notice", with its
 * blank) is an invalid setting, and stops start-up naming the key.  Before
 * the fix it was taken without a word, and every send of the use case the
 * operator meant to exempt was refused as opted out. */
static void test_exempt_use_cases_checked(void **state)
{
	static const char var[] = "DLRD_API_OPTOUT_EXEMPT_USE_CASES";
	struct config cfg;
	char err[256];

	(void)state;
	setenv(var, "security_alert, legal notice", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(api_check_config(&cfg, err, sizeof(err)), DLRD_ECONFIG);
	assert_string_equal(err, "config: api.optout_exempt_use_cases: item 2 is not a use case "
	                         "(1 to 64 letters, digits and _ . : / -)");
	config_fini(&cfg);
	setenv(var, "security_alert, legal.notice/v2", 1);
	assert_int_equal(config_load(NULL, &cfg, err, sizeof(err)), 0);
	assert_int_equal(api_check_config(&cfg, err, sizeof(err)), 0);
	config_fini(&cfg);
	unsetenv(var);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_document_is_openapi_31),
	    cmocka_unit_test(test_routes_match_document),
	    cmocka_unit_test(test_send_providers_match_document),
	    cmocka_unit_test(test_write_origin_matches_message),
	    cmocka_unit_test(test_match),
	    cmocka_unit_test(test_exempt_use_cases_checked),
	    cmocka_unit_test(test_cursor_and_canonical),
	    cmocka_unit_test(test_failed_reveal_wipes_number),
	    cmocka_unit_test(test_read_failure_logged_as_logfmt),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
