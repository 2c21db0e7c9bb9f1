/* SPDX-License-Identifier: MIT */
/*
 * Integration: GET /v1/stats.  Exact counts per group (country, provider,
 * use case) after recording sends across two countries and two providers
 * and posting callbacks for some of them; the filters; an empty window; the
 * tie order; roles (viewer, support and admin read it, app gets 403, no
 * token 401); 422 naming the field for a bad group_by, a bad time, a window
 * backwards or longer than 31 days, a bad country, and unknown or repeated
 * parameters.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "api_helpers.h"

#define N_GB "+447700900123"

static int setup(void **state)
{
	const char *env[] = {api_tokens_env(), NULL};
	return h_fixture_start(state, env);
}

static int teardown(void **state)
{
	return h_fixture_stop(state);
}

static void callback(struct dlrd *d, const char *sid, const char *status, const char *code)
{
	char form[1024];
	struct h_resp r;
	assert_true(h_twilio_body(form, sizeof(form), sid, status, code) > 0);
	assert_int_equal(h_post_status(d, form, &r), 200);
}

/* Records a send; pmid may be NULL. */
static void record(struct dlrd *d, const char *key, const char *to, const char *provider,
                   const char *pmid, const char *use_case)
{
	char body[1024], p[128] = "";
	struct h_resp r;
	if (pmid)
		util_fmt(p, sizeof(p), "\"provider_message_id\":\"%s\",", pmid);
	util_fmt(body, sizeof(body),
	         "{\"to\":\"%s\",\"provider\":\"%s\",%s\"use_case\":\"%s\","
	         "\"template_key\":\"login_code\",\"sender_identity\":\"" N_SENDER "\","
	         "\"action\":{\"type\":\"login\",\"id\":\"user-7\"}}",
	         to, provider, p, use_case);
	if (api_send(d, T_APP, key, body, &r) != 201)
		fail_msg("send %s: %ld: %s", key, r.status, r.body);
}

static json_t *get(struct dlrd *d, const char *token, const char *target, long want)
{
	struct h_resp r;
	long st = api_call(d, "GET", target, token, NULL, NULL, &r);
	if (st != want)
		fail_msg("GET %s: %ld, want %ld: %s", target, st, want, r.body);
	return api_json(&r);
}

/* The group with key (NULL: the null key) in j; fails when absent. */
static json_t *group(json_t *j, const char *key)
{
	json_t *arr = jpath(j, "groups"), *g;
	size_t i;
	json_array_foreach(arr, i, g)
	{
		json_t *k = json_object_get(g, "key");
		if (key ? json_is_string(k) && strcmp(json_string_value(k), key) == 0
		        : json_is_null(k))
			return g;
	}
	fail_msg("no group %s", key ? key : "null");
	return NULL;
}

static void check_group(json_t *j, const char *key, long long count, long long final,
                        const long long st[8])
{
	static const char *const names[] = {"accepted", "sent",    "delivered", "undelivered",
	                                    "failed",   "expired", "rejected",  "unknown"};
	json_t *g = group(j, key);
	assert_int_equal(jpath_i(g, "count"), count);
	assert_int_equal(jpath_i(g, "final"), final);
	for (int i = 0; i < 8; i++) {
		char path[40];
		util_fmt(path, sizeof(path), "statuses.%s", names[i]);
		if (jpath_i(g, path) != st[i])
			fail_msg("%s: %s = %lld, want %lld", key, names[i], jpath_i(g, path),
			         st[i]);
	}
	json_t *rate = json_object_get(g, "delivery_rate");
	if (final == 0) {
		assert_true(json_is_null(rate));
	} else {
		assert_true(json_is_number(rate));
		double want = (double)st[2] / (double) final;
		double got = json_number_value(rate);
		assert_true(got > want - 1e-9 && got < want + 1e-9);
	}
}

static void seed(struct dlrd *d)
{
	char s1[35], s2[35], s3[35], s4[35];

	h_sid(s1, 40, 1);
	h_sid(s2, 40, 2);
	h_sid(s3, 40, 3);
	h_sid(s4, 40, 4);
	/* US, twilio: delivered, undelivered, sent */
	record(d, "st-1", N_TO, "twilio", s1, "otp");
	record(d, "st-2", N_TO, "twilio", s2, "otp");
	record(d, "st-3", N_TO, "twilio", s3, "otp");
	/* GB: twilio delivered; vonage twice with no callback (accepted) */
	record(d, "st-4", N_GB, "twilio", s4, "otp");
	record(d, "st-5", N_GB, "vonage", NULL, "alert");
	record(d, "st-6", N_GB, "vonage", NULL, "alert");
	callback(d, s1, "sent", NULL);
	callback(d, s1, "delivered", NULL);
	callback(d, s2, "undelivered", "30003");
	callback(d, s3, "sent", NULL);
	callback(d, s4, "delivered", NULL);
	/* the callbacks are durable once answered */
}

static void test_counts(void **state)
{
	struct dlrd *d = *state;
	seed(d);

	/* by country (the default): 3 and 3, GB first on the tie */
	json_t *j = get(d, T_VIEWER, "/v1/stats", 200);
	assert_string_equal(jpath_s(j, "group_by"), "country");
	assert_int_equal(json_array_size(jpath(j, "groups")), 2);
	assert_false(json_is_true(jpath(j, "truncated")));
	assert_int_equal(strlen(jpath_s(j, "since")), 24);
	assert_int_equal(strlen(jpath_s(j, "until")), 24);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(jpath(j, "groups"), 0), "key")), "GB");
	check_group(j, "US", 3, 2, (const long long[8]){0, 1, 1, 1, 0, 0, 0, 0});
	check_group(j, "GB", 3, 1, (const long long[8]){2, 0, 1, 0, 0, 0, 0, 0});
	json_decref(j);

	/* by provider: twilio first (4), vonage with no final message */
	j = get(d, T_SUPPORT, "/v1/stats?group_by=provider", 200);
	assert_int_equal(json_array_size(jpath(j, "groups")), 2);
	assert_string_equal(
	    json_string_value(json_object_get(json_array_get(jpath(j, "groups"), 0), "key")),
	    "twilio");
	check_group(j, "twilio", 4, 3, (const long long[8]){0, 1, 2, 1, 0, 0, 0, 0});
	check_group(j, "vonage", 2, 0, (const long long[8]){2, 0, 0, 0, 0, 0, 0, 0});
	json_decref(j);

	/* filters */
	j = get(d, T_ADMIN, "/v1/stats?group_by=use_case&provider=twilio", 200);
	assert_int_equal(json_array_size(jpath(j, "groups")), 1);
	check_group(j, "otp", 4, 3, (const long long[8]){0, 1, 2, 1, 0, 0, 0, 0});
	json_decref(j);
	j = get(d, T_VIEWER, "/v1/stats?group_by=provider&country=gb", 200);
	assert_int_equal(json_array_size(jpath(j, "groups")), 2);
	check_group(j, "vonage", 2, 0, (const long long[8]){2, 0, 0, 0, 0, 0, 0, 0});
	check_group(j, "twilio", 1, 1, (const long long[8]){0, 0, 1, 0, 0, 0, 0, 0});
	json_decref(j);
	j = get(d, T_VIEWER, "/v1/stats?group_by=template_key&use_case=alert", 200);
	check_group(j, "login_code", 2, 0, (const long long[8]){2, 0, 0, 0, 0, 0, 0, 0});
	json_decref(j);
	j = get(d, T_VIEWER, "/v1/stats?group_by=sender_identity", 200);
	check_group(j, N_SENDER, 6, 3, (const long long[8]){2, 1, 2, 1, 0, 0, 0, 0});
	json_decref(j);

	/* a window with nothing in it; an explicit one that holds everything */
	j = get(d, T_VIEWER, "/v1/stats?since=2020-01-01T00:00:00Z&until=2020-01-31T00:00:00Z",
	        200);
	assert_int_equal(json_array_size(jpath(j, "groups")), 0);
	assert_string_equal(jpath_s(j, "since"), "2020-01-01T00:00:00.000Z");
	assert_string_equal(jpath_s(j, "until"), "2020-01-31T00:00:00.000Z");
	json_decref(j);
	char target[160], since[25], until[25];
	util_rfc3339(util_now_ms() - 3600 * 1000, since);
	util_rfc3339(util_now_ms() + 3600 * 1000, until);
	util_fmt(target, sizeof(target), "/v1/stats?group_by=provider&since=%s&until=%s", since,
	         until);
	j = get(d, T_VIEWER, target, 200);
	check_group(j, "twilio", 4, 3, (const long long[8]){0, 1, 2, 1, 0, 0, 0, 0});
	json_decref(j);
}

static void test_roles(void **state)
{
	struct dlrd *d = *state;
	struct h_resp r;

	assert_int_equal(api_call(d, "GET", "/v1/stats", T_APP, NULL, NULL, &r), 403);
	json_t *j = api_json(&r);
	assert_string_equal(jpath_s(j, "error.code"), "forbidden");
	json_decref(j);
	assert_int_equal(api_call(d, "GET", "/v1/stats", NULL, NULL, NULL, &r), 401);
	assert_int_equal(api_call(d, "GET", "/v1/stats", T_WRONG, NULL, NULL, &r), 401);
	json_decref(get(d, T_VIEWER, "/v1/stats", 200));
	json_decref(get(d, T_SUPPORT, "/v1/stats", 200));
	json_decref(get(d, T_ADMIN, "/v1/stats", 200));
}

static void test_bad_parameters(void **state)
{
	struct dlrd *d = *state;
	static const struct {
		const char *target, *code, *field;
	} cases[] = {
	    {"/v1/stats?group_by=status", "invalid_parameter", "group_by"},
	    {"/v1/stats?since=yesterday", "invalid_parameter", "since"},
	    {"/v1/stats?until=2026-13-01T00:00:00Z", "invalid_parameter", "until"},
	    {"/v1/stats?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "invalid_parameter",
	     "until"},
	    {"/v1/stats?since=2026-01-01T00:00:00Z&until=2026-01-01T00:00:00Z", "invalid_parameter",
	     "until"},
	    {"/v1/stats?since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:01Z", "invalid_parameter",
	     "since"},
	    {"/v1/stats?since=2099-01-01T00:00:00Z", "invalid_parameter", "since"},
	    {"/v1/stats?country=USA", "invalid_parameter", "country"},
	    {"/v1/stats?since=0000-12-31T00:00:00Z&until=0001-01-01T00:00:00Z", "invalid_parameter",
	     "since"},
	    {"/v1/stats?until=0001-01-01T12:00:00Z", "invalid_parameter", "since"},
	    {"/v1/stats?since=9999-12-31T00:00:00Z&until=9999-12-31T23:59:59-00:01",
	     "invalid_parameter", "until"},
	    {"/v1/stats?limit=5", "unknown_parameter", "limit"},
	    {"/v1/stats?group_by=provider&group_by=country", "repeated_parameter", "group_by"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		json_t *j = get(d, T_VIEWER, cases[i].target, 422);
		if (strcmp(jpath_s(j, "error.code"), cases[i].code) != 0 ||
		    strcmp(jpath_s(j, "error.field"), cases[i].field) != 0)
			fail_msg("%s: %s %s", cases[i].target, jpath_s(j, "error.code"),
			         jpath_s(j, "error.field"));
		json_decref(j);
	}
	/* exactly 31 days is allowed */
	json_decref(get(d, T_VIEWER,
	                "/v1/stats?since=2026-01-01T00:00:00Z&until=2026-02-01T00:00:00Z", 200));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_counts, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_roles, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_parameters, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
