/* SPDX-License-Identifier: MIT */
/*
 * The one provider table, and helpers every adapter shares.  Adding a
 * provider: write src/providers/<name>.c exporting `const struct provider
 * provider_<name>`, and add one line to the table below (see
 * src/providers/README.md).
 */
#include "provider.h"

#include <string.h>

#include "dlrd_limits.h"
#include "phone.h"
#include "privacy.h"

extern const struct provider provider_twilio;
extern const struct provider provider_telnyx;
extern const struct provider provider_plivo;
extern const struct provider provider_sinch;
extern const struct provider provider_infobip;
extern const struct provider provider_vonage;
extern const struct provider provider_vonage_messages;
extern const struct provider provider_messagebird;
extern const struct provider provider_sns;
extern const struct provider provider_kannel;
extern const struct provider provider_generic;

const struct provider *const provider_table[] = {
    &provider_twilio,  &provider_telnyx, &provider_plivo,           &provider_sinch,
    &provider_infobip, &provider_vonage, &provider_vonage_messages, &provider_messagebird,
    &provider_sns,     &provider_kannel, &provider_generic,         NULL,
};

const struct provider *provider_find(const char *name, size_t n)
{
	for (size_t i = 0; provider_table[i]; i++) {
		const char *pn = provider_table[i]->name;
		if (strlen(pn) == n && memcmp(pn, name, n) == 0)
			return provider_table[i];
	}
	return NULL;
}

size_t provider_index(const struct provider *p)
{
	for (size_t i = 0; provider_table[i]; i++)
		if (provider_table[i] == p)
			return i;
	return 0;
}

size_t provider_count(void)
{
	return ARRAY_LEN(provider_table) - 1;
}

/* Besides the hash and the country (provider.h), sets the masked number for
 * display and whether the country came from the number; the number itself
 * is never kept.  The JSON API calls it too, so a recorded send and its
 * callbacks hash the same number the same way. */
void provider_set_recipient(struct dlr_event *ev, struct arena *a, const char *raw, size_t n)
{
	char e164[PHONE_E164_MAX + 1];

	if (!raw || phone_normalize(raw, n, e164) != 0)
		return;
	if (privacy_has_key()) {
		char *h = arena_alloc(a, 65);
		privacy_recipient_hash(e164, h);
		ev->recipient_hash = h;
	}
	char *m = arena_alloc(a, PHONE_E164_MAX + 1);
	phone_mask(e164, m);
	ev->recipient_masked = m;
	if (!ev->destination_country) {
		ev->destination_country = phone_country(e164);
		ev->country_from_number = ev->destination_country != NULL;
	}
}

bool provider_upgrade_event_id(struct arena *a, const char *provider, const char *id,
                               const char *pmid, const char *raw_status, const char *error_code,
                               const char **new_id, char new_dedup[65])
{
	const struct provider *p = provider ? provider_find(provider, strlen(provider)) : NULL;
	struct dlr_event ev;
	const char *nid;

	if (!p || !p->upgrade_event_id || !id)
		return false;
	nid = p->upgrade_event_id(a, id, pmid, raw_status, error_code);
	if (!nid)
		return false;
	/* the key event_finish() gives a status event with this id, as parse()
	 * makes it: it covers only the provider and the event id */
	memset(&ev, 0, sizeof(ev));
	ev.kind = EV_STATUS;
	ev.provider = p->name;
	ev.provider_event_id = nid;
	ev.provider_message_id = pmid;
	ev.raw_status = raw_status;
	ev.error_code = error_code;
	ev.occurred_ms = -1;
	event_finish(&ev);
	memcpy(new_dedup, ev.dedup_key, 65);
	*new_id = nid;
	return true;
}

const char *provider_text(struct arena *a, const char *p, size_t n, size_t max)
{
	if (!p || n == 0 || n > max)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f)
			return NULL;
	}
	return arena_strndup(a, p, n);
}

const char *provider_hex_id(struct arena *a, const char *p, size_t n)
{
	char *s = (char *)provider_text(a, p, n, LIM_ID_BYTES);
	bool hex = s != NULL;

	for (size_t i = 0; hex && i < n; i++)
		hex = strchr("0123456789abcdefABCDEF-", s[i]) != NULL;
	for (size_t i = 0; hex && i < n; i++)
		s[i] = (char)(s[i] >= 'A' && s[i] <= 'F' ? s[i] + 32 : s[i]);
	return s;
}

struct dlr_event *provider_events_new(struct arena *a, const char *provider, size_t n)
{
	size_t cap = n ? n : 1;
	struct dlr_event *evs = arena_alloc(a, cap * sizeof(*evs));

	memset(evs, 0, cap * sizeof(*evs));
	for (size_t i = 0; i < cap; i++) {
		evs[i].provider = provider;
		evs[i].occurred_ms = -1;
	}
	return evs;
}

void provider_unusable(struct dlr_event *ev, const char *detail)
{
	ev->kind = EV_UNUSABLE;
	ev->review = REVIEW_UNUSABLE;
	ev->review_detail = detail;
	ev->status = ST_UNKNOWN;
	ev->provider_message_id = NULL;
	event_finish(ev);
}

int provider_config_list(const struct config *cfg, const char *section, const char *key,
                         const char *what, size_t min_len, char ***list, size_t *n, char *err,
                         size_t errlen)
{
	const char *v = config_get(cfg, section, key);
	char **l;

	*list = NULL;
	*n = 0;
	if (!v)
		return 0;
	l = config_list(v, n);
	if (*n > LIM_SECRETS) {
		util_fmt(err, errlen, "config: %s.%s: at most %u %s", section, key, LIM_SECRETS,
		         what);
		goto fail;
	}
	for (size_t i = 0; i < *n; i++) {
		if (strlen(l[i]) < min_len) {
			util_fmt(err, errlen, "config: %s.%s: item %zu is shorter than %zu",
			         section, key, i + 1, min_len);
			goto fail;
		}
	}
	if (*n == 0)
		config_list_free(l);
	else
		*list = l;
	return 0;
fail:
	config_list_free(l);
	*n = 0;
	return DLRD_ECONFIG;
}

int provider_config_tolerance(const struct config *cfg, const char *section, unsigned long dflt,
                              int64_t *seconds, char *err, size_t errlen)
{
	const char *v = config_get(cfg, section, "tolerance_seconds");
	unsigned long s = dflt;

	if (v && config_parse_uint(section, "tolerance_seconds", v, 1, PROVIDER_TOLERANCE_MAX, &s,
	                           err, errlen) != 0)
		return DLRD_ECONFIG;
	*seconds = (int64_t)s;
	return 0;
}
