#include "engine/signals/canonical.h"

#include <unicode/bytestream.h>
#include <unicode/normalizer2.h>
#include <unicode/unistr.h>

#include <memory>

#include "engine/common/url.h"

namespace carewatch::signals {
namespace {

constexpr size_t kMaxIdentifierBytes = 512;

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// NFKC with case folding (Unicode's NFKC_Casefold): width, compatibility
// forms and case disappear. false on malformed UTF-8.
bool FoldCase(std::string_view in, std::string* out) {
  UErrorCode err = U_ZERO_ERROR;
  const icu::Normalizer2* n = icu::Normalizer2::getNFKCCasefoldInstance(err);
  if (U_FAILURE(err)) return false;
  icu::UnicodeString u = icu::UnicodeString::fromUTF8(icu::StringPiece(in.data(), in.size()));
  // fromUTF8 maps malformed sequences to U+FFFD: refuse them.
  if (u.indexOf(static_cast<char16_t>(0xFFFD)) >= 0) return false;
  icu::UnicodeString folded = n->normalize(u, err);
  if (U_FAILURE(err)) return false;
  out->clear();
  folded.toUTF8String(*out);
  return true;
}

bool HasSpaceOrControl(std::string_view s) {
  for (unsigned char c : s)
    if (c <= 0x20 || c == 0x7f) return true;
  return false;
}

Status Email(std::string_view v, std::string* out) {
  std::string folded;
  if (!FoldCase(v, &folded)) return Status::InvalidArgument("email: not valid UTF-8");
  const size_t at = folded.rfind('@');
  if (at == std::string::npos || folded.find('@') != at)
    return Status::InvalidArgument("email: needs exactly one '@'");
  std::string_view local = std::string_view(folded).substr(0, at);
  std::string_view domain = std::string_view(folded).substr(at + 1);
  if (local.empty() || local.size() > 64)
    return Status::InvalidArgument("email: the part before '@' must be 1-64 bytes");
  if (HasSpaceOrControl(local) || HasSpaceOrControl(domain))
    return Status::InvalidArgument("email: contains a space or control character");
  std::string ascii;
  if (!HostToAscii(domain, &ascii) || ascii.find('.') == std::string::npos)
    return Status::InvalidArgument("email: the domain is not a valid host name");
  *out = std::string(local) + "@" + ascii;
  return Status::Ok();
}

Status Phone(std::string_view v, std::string* out) {
  std::string digits;
  bool plus = false;
  for (size_t i = 0; i < v.size(); ++i) {
    const char c = v[i];
    if (c >= '0' && c <= '9') {
      digits += c;
    } else if (c == '+' && i == 0) {
      plus = true;
    } else if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')' || c == '/') {
      continue;
    } else {
      return Status::InvalidArgument(
          "phone: only digits, a leading '+' and the separators space - . ( ) / are allowed");
    }
  }
  if (!plus && digits.rfind("00", 0) == 0) {
    digits.erase(0, 2);
    plus = true;
  }
  if (!plus)
    return Status::InvalidArgument(
        "phone: needs its country code, written +CC or 00CC (E.164 has no national form)");
  if (digits.size() < 7 || digits.size() > 15)
    return Status::InvalidArgument("phone: E.164 numbers have 7 to 15 digits after '+'");
  if (digits[0] == '0') return Status::InvalidArgument("phone: a country code never starts with 0");
  *out = "+" + digits;
  return Status::Ok();
}

Status Handle(std::string_view v, std::string* out) {
  const size_t colon = v.find(':');
  if (colon == std::string_view::npos)
    return Status::InvalidArgument("handle: write it as PLATFORM:HANDLE, e.g. otherapp:alice");
  std::string platform(Trim(v.substr(0, colon)));
  for (char& c : platform) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    const bool ok =
        (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
    if (!ok)
      return Status::InvalidArgument("handle: the platform name may hold a-z 0-9 . - _ only");
  }
  if (platform.empty()) return Status::InvalidArgument("handle: the platform name is empty");
  std::string_view handle = Trim(v.substr(colon + 1));
  while (!handle.empty() && handle.front() == '@') handle.remove_prefix(1);
  std::string folded;
  if (!FoldCase(handle, &folded)) return Status::InvalidArgument("handle: not valid UTF-8");
  if (folded.empty()) return Status::InvalidArgument("handle: the handle is empty");
  if (HasSpaceOrControl(folded))
    return Status::InvalidArgument("handle: contains a space or control character");
  *out = platform + ":" + folded;
  return Status::Ok();
}

Status ProfileUrl(std::string_view v, std::string* out) {
  if (HasSpaceOrControl(v)) return Status::InvalidArgument("profile_url: contains a space");
  auto n = NormalizeUrl(v);
  if (!n) return Status::InvalidArgument("profile_url: has no host");
  std::string ascii;
  if (!HostToAscii(n->host(), &ascii))
    return Status::InvalidArgument("profile_url: the host is not a valid host name");
  if (ascii.rfind("www.", 0) == 0) ascii.erase(0, 4);
  *out = ascii + n->key.substr(n->host_size);
  return Status::Ok();
}

}  // namespace

bool IsIdentifierKind(std::string_view kind) {
  for (const char* k : kIdentifierKinds)
    if (kind == k) return true;
  return false;
}

Status Canonicalize(std::string_view kind, std::string_view value, std::string* out) {
  value = Trim(value);
  if (value.empty()) return Status::InvalidArgument(std::string(kind) + ": empty identifier");
  if (value.size() > kMaxIdentifierBytes)
    return Status::InvalidArgument(std::string(kind) + ": longer than " +
                                   std::to_string(kMaxIdentifierBytes) + " bytes");
  if (kind == "email") return Email(value, out);
  if (kind == "phone") return Phone(value, out);
  if (kind == "handle") return Handle(value, out);
  if (kind == "profile_url") return ProfileUrl(value, out);
  return Status::InvalidArgument("unknown identifier kind '" + std::string(kind) +
                                 "' (email, phone, handle, profile_url)");
}

std::string TokenInput(std::string_view kind, std::string_view canonical) {
  std::string s(kind);
  s += '\0';
  s.append(canonical);
  return s;
}

}  // namespace carewatch::signals
