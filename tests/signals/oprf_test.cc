#include "engine/signals/oprf.h"

#include <gtest/gtest.h>

#include <string>

#include "engine/common/digest.h"

namespace carewatch::signals {
namespace {

std::string Unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2)
    out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

template <size_t N>
std::string Str(const std::array<uint8_t, N>& a) {
  return std::string(reinterpret_cast<const char*>(a.data()), N);
}

template <size_t N>
std::array<uint8_t, N> Arr(const std::string& hex) {
  std::array<uint8_t, N> a{};
  std::string b = Unhex(hex);
  std::copy(b.begin(), b.end(), a.begin());
  return a;
}

// RFC 9497 appendix A.1.1: OPRF(ristretto255, SHA-512), mode 0x00.
constexpr const char* kSeed = "a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3";
constexpr const char* kKeyInfo = "74657374206b6579";
constexpr const char* kSkSm = "5ebcea5ee37023ccb9fc2d2019f9d7737be85591ae8652ffa9ef0f4d37063b0e";
constexpr const char* kBlind = "64d37aed22a27f5191de1c1d69fadb899d8862b58eb4220029e036ec4c1f6706";

struct Vector {
  const char *input, *blinded, *evaluated, *output;
};
constexpr Vector kVectors[] = {
    {"00", "609a0ae68c15a3cf6903766461307e5c8bb2f95e7e6550e1ffa2dc99e412803c",
     "7ec6578ae5120958eb2db1745758ff379e77cb64fe77b0b2d8cc917ea0869c7e",
     "527759c3d9366f277d8c6020418d96bb393ba2afb20ff90df23fb7708264e2f3ab9135e3bd69955851de4b1f9fe8a"
     "0"
     "973396719b7912ba9ee8aa7d0b5e24bcf6"},
    {"5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a",
     "da27ef466870f5f15296299850aa088629945a17d1f5b7f5ff043f76b3c06418",
     "b4cbf5a4f1eeda5a63ce7b77c7d23f461db3fcab0dd28e4e17cecb5c90d02c25",
     "f4a74c9c592497375e796aa837e907b1a045d34306a749db9f34221f7e750cb4f2a6413a6bf6fa5e19ba6348eb673"
     "9"
     "34a722a7ede2e7621306d18951e7cf2c73"},
};

TEST(Oprf, ExpandMessageXmdMatchesRfc9380Sha512Vectors) {
  // RFC 9380 appendix K.3, expand_message_xmd(SHA-512).
  const std::string dst = "QUUX-V01-CS02-with-expander-SHA512-256";
  std::string out;
  ASSERT_TRUE(ExpandMessageXmd("abcdef0123456789", dst, 0x20, &out).ok());
  EXPECT_EQ(HexEncode(out), "087e45a86e2939ee8b91100af1583c4938e0f5fc6c9db4b107b83346bc967f58");
  ASSERT_TRUE(ExpandMessageXmd("abc", dst, 0x80, &out).ok());
  EXPECT_EQ(HexEncode(out),
            "7f1dddd13c08b543f2e2037b14cefb255b44c83cc397c1786d975653e36a6b11bdd7732d8b38adb4a0edc2"
            "6a0cef4bb45217135456e58fbca1703cd6032cb1347ee720b87972d63fbf232587043ed2901bce7f22610c"
            "0419751c065922b488431851041310ad659e4b23520e1772ab29dcdeb2002222a363f0c2b1c972b3efe1");
}

TEST(Oprf, DeriveKeyPairMatchesRfc9497) {
  Scalar sk;
  Element pk;
  ASSERT_TRUE(DeriveKeyPair(Unhex(kSeed), Unhex(kKeyInfo), &sk, &pk).ok());
  EXPECT_EQ(HexEncode(Str(sk)), kSkSm);
}

TEST(Oprf, BlindEvaluateFinalizeMatchRfc9497Vectors) {
  const Scalar sk = Arr<32>(kSkSm);
  const Scalar fixed = Arr<32>(kBlind);
  for (const Vector& v : kVectors) {
    SCOPED_TRACE(v.input);
    Scalar blind;
    Element blinded, evaluated;
    ASSERT_TRUE(Blind(Unhex(v.input), &blind, &blinded, &fixed).ok());
    EXPECT_EQ(HexEncode(Str(blinded)), v.blinded);
    ASSERT_TRUE(BlindEvaluate(sk, Str(blinded), &evaluated).ok());
    EXPECT_EQ(HexEncode(Str(evaluated)), v.evaluated);
    std::string out;
    ASSERT_TRUE(Finalize(Unhex(v.input), blind, Str(evaluated), &out).ok());
    EXPECT_EQ(HexEncode(out), v.output);
    // The server's direct evaluation gives the same output.
    std::string direct;
    ASSERT_TRUE(Evaluate(sk, Unhex(v.input), &direct).ok());
    EXPECT_EQ(HexEncode(direct), v.output);
  }
}

TEST(Oprf, RandomBlindsGiveTheSameOutputAndDifferentBlindedElements) {
  const Scalar sk = RandomScalar();
  Scalar b1, b2;
  Element e1, e2, v1, v2;
  ASSERT_TRUE(Blind("email\0a@b.test", &b1, &e1).ok());
  ASSERT_TRUE(Blind("email\0a@b.test", &b2, &e2).ok());
  EXPECT_NE(Str(e1), Str(e2));  // the server cannot link two requests
  ASSERT_TRUE(BlindEvaluate(sk, Str(e1), &v1).ok());
  ASSERT_TRUE(BlindEvaluate(sk, Str(e2), &v2).ok());
  std::string o1, o2;
  ASSERT_TRUE(Finalize("email\0a@b.test", b1, Str(v1), &o1).ok());
  ASSERT_TRUE(Finalize("email\0a@b.test", b2, Str(v2), &o2).ok());
  EXPECT_EQ(o1, o2);
  // Another key gives another output.
  std::string other;
  ASSERT_TRUE(Evaluate(RandomScalar(), "email\0a@b.test", &other).ok());
  EXPECT_NE(other, o1);
}

TEST(Oprf, BlindEvaluateRefusesWhatIsNotAnElement) {
  const Scalar sk = RandomScalar();
  Element out;
  EXPECT_EQ(BlindEvaluate(sk, std::string(31, 'a'), &out).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(BlindEvaluate(sk, std::string(32, '\0'), &out).code(),
            Status::Code::kInvalidArgument);  // the identity
  EXPECT_EQ(BlindEvaluate(sk, std::string(32, '\xff'), &out).code(),
            Status::Code::kInvalidArgument);  // not canonical
  std::string o;
  EXPECT_EQ(Evaluate(sk, std::string(70000, 'a'), &o).code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace carewatch::signals
