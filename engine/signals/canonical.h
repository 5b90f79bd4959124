#ifndef CAREWATCH_ENGINE_SIGNALS_CANONICAL_H_
#define CAREWATCH_ENGINE_SIGNALS_CANONICAL_H_

#include <string>
#include <string_view>

#include "engine/common/status.h"

namespace carewatch::signals {

// The kinds of identifier a signal token stands for (docs/signals.md
// "Canonical forms"). Two platforms that hold the same account get the same
// token only if both canonicalise it the same way: these rules are the
// contract, and a client in another language implements them as written.
//   email        alice@example.test
//   phone        +447700900123 (E.164)
//   handle       otherapp:alice (the platform the handle lives on, a colon,
//                the handle)
//   profile_url  otherapp.test/u/alice
constexpr const char* kIdentifierKinds[] = {"email", "phone", "handle", "profile_url"};
bool IsIdentifierKind(std::string_view kind);

// The canonical form of `value` as an identifier of `kind`, or
// InvalidArgument saying what is wrong with it. The error never repeats the
// value (identifiers are not logged).
Status Canonicalize(std::string_view kind, std::string_view value, std::string* out);

// The OPRF input for a canonical identifier: kind, 0x00, canonical form.
// Kinds never share a token.
std::string TokenInput(std::string_view kind, std::string_view canonical);

}  // namespace carewatch::signals

#endif  // CAREWATCH_ENGINE_SIGNALS_CANONICAL_H_
