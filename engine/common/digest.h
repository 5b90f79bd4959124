#ifndef CAREWATCH_ENGINE_COMMON_DIGEST_H_
#define CAREWATCH_ENGINE_COMMON_DIGEST_H_

#include <string>
#include <string_view>

namespace carewatch {

// Lower-case hex SHA-256 of `data` (64 characters).
std::string Sha256Hex(std::string_view data);

// Lower-case hex of arbitrary bytes.
std::string HexEncode(std::string_view bytes);

// The bytes HexEncode wrote: false (and `out` untouched) unless `hex` is an
// even number of lower-case hex digits.
bool HexDecode(std::string_view hex, std::string* out);

}  // namespace carewatch

#endif  // CAREWATCH_ENGINE_COMMON_DIGEST_H_
