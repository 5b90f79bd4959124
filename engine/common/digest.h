#ifndef CAREWATCH_ENGINE_COMMON_DIGEST_H_
#define CAREWATCH_ENGINE_COMMON_DIGEST_H_

#include <string>
#include <string_view>

namespace carewatch {

// Lower-case hex SHA-256 of `data` (64 characters).
std::string Sha256Hex(std::string_view data);

// Lower-case hex of arbitrary bytes.
std::string HexEncode(std::string_view bytes);

}  // namespace carewatch

#endif  // CAREWATCH_ENGINE_COMMON_DIGEST_H_
