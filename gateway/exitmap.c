/* SPDX-License-Identifier: MIT */
/*
 * Wire error codes to process exit codes (exitcodes.h): the commands'
 * side of the error rule, kept out of the session engine. Declared in
 * session.h, where its callers find it.
 */
#include "exitcodes.h"
#include "session.h"

int gw_exit_for_wire_error(int code)
{
	switch (code) {
	case 0:
		return MR_EXIT_OK;
	case WIRE_E_NOT_ALLOWED:
	case WIRE_E_BAD_TOKEN:
	case WIRE_E_IDENTITY:
		return MR_EXIT_AUTH;
	case WIRE_E_NO_TARGET:
	case WIRE_E_TARGET:
		return MR_EXIT_TARGET;
	case WIRE_E_DIGEST:
		return MR_EXIT_DIGEST;
	case WIRE_E_TRUNCATED:
		return MR_EXIT_PEER_GONE;
	case WIRE_E_PROTOCOL:
		return MR_EXIT_PROTOCOL;
	case WIRE_E_LIMIT:
	case WIRE_E_UNSUPPORTED:
		return MR_EXIT_USAGE;
	default:
		return MR_EXIT_FAIL;
	}
}
