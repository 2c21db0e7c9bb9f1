/* SPDX-License-Identifier: MIT */
/*
 * The tests' strict logfmt check, for every test that reads dlrd's log
 * lines (unit and integration).  Header-only, like pgtest.h.
 */
#ifndef DLRD_TEST_LOGFMT_H
#define DLRD_TEST_LOGFMT_H

#include <stdbool.h>

/* True when line (without its newline) is strict logfmt: key=value pairs
 * separated by one blank, a key without blanks, '=' or '"', a value either
 * bare (no blank, no '"') or double-quoted with backslash escapes. */
static inline bool logfmt_ok(const char *p, const char *end)
{
	while (p < end) {
		const char *k = p;
		while (p < end && *p != '=' && *p != ' ' && *p != '"')
			p++;
		if (p == k || p == end || *p != '=')
			return false;
		p++;
		if (p < end && *p == '"') {
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\' && ++p == end)
					return false;
			if (p == end)
				return false;
			p++;
		} else {
			while (p < end && *p != ' ' && *p != '"')
				p++;
			if (p < end && *p == '"')
				return false;
		}
		if (p < end && (*p != ' ' || ++p == end))
			return false;
	}
	return true;
}

#endif
