#include "tools/corpus/corpus.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>

namespace carewatch::corpus {

namespace {

const char* const kServices[] = {"example-social", "example-games", "example-video",
                                 "example-chat",   "example-forum", "example-live",
                                 "example-photos", "example-dating"};
const char* const kSurfaces[] = {"public_post", "comment",         "direct_message", "group_chat",
                                 "livestream",  "livestream_chat", "game_chat",      "profile",
                                 "file_share",  "direct_message",  "direct_message", "comment"};
const char* const kContentTypes[] = {"text",  "text", "text",    "image",
                                     "video", "link", "account", "audio"};
const char* const kReporters[] = {"user",
                                  "user",
                                  "user",
                                  "user",
                                  "automated_detection",
                                  "trusted_flagger",
                                  "parent_or_guardian",
                                  "hotline"};
const char* const kReasons[] = {"spam",          "harassment", "hate", "scam",
                                "impersonation", "self_harm",  "csea", "bullying",
                                "violence",      "other",      "spam", "harassment"};
const char* const kAgeBands[] = {"unknown",  "adult",    "adult",   "adult",
                                 "16_to_17", "13_to_15", "under_13"};

const char* const kSubjects[] = {"the match",   "my order",   "the new update", "this stream",
                                 "the quiz",    "our team",   "the weekend",    "the homework",
                                 "the trailer", "that song",  "the level",      "the giveaway",
                                 "the weather", "the recipe", "my account"};
const char* const kVerbs[] = {"was really good", "keeps crashing", "starts at eight",
                              "is sold out",     "looks amazing",  "needs fixing",
                              "got cancelled",   "went viral",     "was way too long",
                              "is on sale",      "has a new map",  "is still broken"};
const char* const kTails[] = {
    "honestly",  "lol",      "if you ask me",         "again",     "for real", "today",
    "this time", "as usual", "according to the post", "apparently"};

// Signal sentences by category (plain, non-graphic descriptions of contact
// patterns; they mirror the categories of rules/csea-grooming.yaml).
const char* const kSignals[] = {
    "add me on snap",
    "message me on telegram",
    "lets move to whatsapp",
    "whats your snap",
    "this is our little secret",
    "dont tell your parents",
    "keep this between us",
    "how old are you",
    "where do you live",
    "are you home alone",
    "i can get you robux",
    "i will send you a gift card",
    "lets meet up",
    "meet me after school",
    "or i will post them",
    "i will send the pics to your friends",
};

const char* const kBenignHosts[] = {"news.example.test", "shop.example.test", "video.example.test",
                                    "blog.example.org.test", "cdn.example.test"};
const char* const kListedUrls[] = {"https://listed-host.test/item/4",
                                   "http://files.example.test/shared/album-7731/1",
                                   "https://share.example.invalid/view?id=55120"};
const char* const kListedHashes[] = {"0f1e2d3c4b5a69788796a5b4c3d2e1f0",
                                     "5e0c6b8a2f4d1e3c7a9b0d2f4e6a8c0b"};

}  // namespace

CorpusGenerator::CorpusGenerator(const CorpusOptions& options)
    : options_(options), rng_(options.seed), clock_(options.start_time) {}

std::string CorpusGenerator::Sentence() {
  return std::string(Pick(kSubjects)) + " " + Pick(kVerbs) + " " + Pick(kTails) + ". ";
}

std::string CorpusGenerator::Evade(const std::string& s) {
  std::string out;
  switch (std::uniform_int_distribution<int>(0, 3)(rng_)) {
    case 0:  // digits for letters
      for (char c : s) out += c == 'e' ? '3' : c == 'a' ? '4' : c == 'o' ? '0' : c;
      return out;
    case 1:  // capitals
      for (char c : s) out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return out;
    case 2:  // a zero-width space inside the last word
      out = s;
      out.insert(out.size() > 2 ? out.size() - 2 : 0, "\u200B");
      return out;
    default:
      return s;
  }
}

std::string CorpusGenerator::Signal() { return Evade(Pick(kSignals)); }

void CorpusGenerator::Next(v1::ContentReport* r) {
  r->Clear();
  ++counter_;
  clock_ += std::uniform_int_distribution<int>(1, std::max(1, options_.max_gap_seconds))(rng_);
  int services = std::max(1, std::min<int>(options_.num_services, 8));
  std::string service = kServices[std::uniform_int_distribution<int>(0, services - 1)(rng_)];
  char id[48];
  std::snprintf(id, sizeof id, "r-%llu", static_cast<unsigned long long>(counter_));
  r->set_report_id(id);
  r->set_service_id(service);
  r->mutable_received_at()->set_seconds(clock_);
  r->set_surface(Pick(kSurfaces));
  r->set_content_type(Pick(kContentTypes));
  r->set_reporter_type(Pick(kReporters));
  r->set_reason(Pick(kReasons));
  r->set_subject_age_band(Pick(kAgeBands));
  bool signal = Chance(options_.signal_fraction);
  bool planted = signal && !options_.plants.empty();
  if (planted) signal = false;  // the plant is the signal
  std::string text;
  size_t signal_at =
      signal ? std::uniform_int_distribution<size_t>(0, options_.text_bytes)(rng_) : SIZE_MAX;
  while (text.size() < options_.text_bytes) {
    if (text.size() >= signal_at) {
      text += Signal() + " ";
      signal_at = SIZE_MAX;
    }
    text += Sentence();
  }
  if (signal && Chance(0.5)) text += Signal();
  r->set_text(text);
  char user[32];
  std::snprintf(
      user, sizeof user, "user_%05llu",
      static_cast<unsigned long long>(std::uniform_int_distribution<int>(0, 99999)(rng_)));
  r->set_username(user);
  r->set_display_name(std::string("Player ") + std::to_string(counter_ % 997));
  if (Chance(0.3)) r->set_profile_bio(std::string(Pick(kSubjects)) + " fan, " + Pick(kTails));
  if (Chance(0.25)) {
    r->add_urls(std::string("https://") + Pick(kBenignHosts) + "/p/" +
                std::to_string(counter_ % 10007));
  }
  if (r->content_type() == "image" || r->content_type() == "video") {
    v1::Hash* h = r->add_hashes();
    h->set_algorithm("md5");
    char hex[40];
    std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(rng_()),
                  static_cast<unsigned long long>(rng_()));
    h->set_value(hex);
  }
  if (signal && Chance(0.1)) r->add_urls(Pick(kListedUrls));
  if (signal && Chance(0.1)) {
    v1::Hash* h = r->add_hashes();
    h->set_algorithm("md5");
    h->set_value(Pick(kListedHashes));
  }
  if (r->surface() == "direct_message") {
    (*r->mutable_attributes())["sender_is_connection"] = Chance(0.6) ? "true" : "false";
  }
  if (planted) Plant(r);
}

void CorpusGenerator::Plant(v1::ContentReport* r) {
  const auto& by_rule = options_.plants;
  const auto& rule = by_rule[std::uniform_int_distribution<size_t>(0, by_rule.size() - 1)(rng_)];
  const v1::ContentReport& p =
      rule[std::uniform_int_distribution<size_t>(0, rule.size() - 1)(rng_)];
  auto lead = [](const std::string& planted, std::string* field) {
    if (!planted.empty()) *field = planted + (field->empty() ? "" : " " + *field);
  };
  lead(p.text(), r->mutable_text());
  lead(p.caption(), r->mutable_caption());
  lead(p.profile_bio(), r->mutable_profile_bio());
  if (!p.username().empty()) r->set_username(p.username());
  if (!p.display_name().empty()) r->set_display_name(p.display_name());
  if (!p.service_id().empty()) r->set_service_id(p.service_id());
  if (!p.surface().empty()) r->set_surface(p.surface());
  if (!p.content_type().empty()) r->set_content_type(p.content_type());
  if (!p.reporter_type().empty()) r->set_reporter_type(p.reporter_type());
  if (!p.reason().empty()) r->set_reason(p.reason());
  if (!p.subject_age_band().empty()) r->set_subject_age_band(p.subject_age_band());
  for (const auto& u : p.urls()) r->add_urls(u);
  for (const auto& h : p.hashes()) *r->add_hashes() = h;
  for (const auto& [k, v] : p.attributes()) (*r->mutable_attributes())[k] = v;
}

std::string GenerateRulePack(int num_rules, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const char* const kWords[] = {
      "alpha",  "bravo",  "charlie", "delta",  "echo",     "foxtrot", "golf",   "hotel",  "india",
      "juliet", "kilo",   "lima",    "mike",   "november", "oscar",   "papa",   "quebec", "romeo",
      "sierra", "tango",  "uniform", "victor", "whiskey",  "xray",    "yankee", "zulu",   "amber",
      "cobalt", "indigo", "jade",    "onyx",   "pearl",    "ruby",    "topaz",  "umber"};
  auto word = [&] { return std::string(kWords[rng() % (sizeof kWords / sizeof *kWords)]); };
  std::string y =
      "pack: generated-scale\nversion: \"1\"\nduties:\n"
      "  - {id: gen.duty, deadline: 24h, actions: [remove_content]}\nrules:\n";
  for (int i = 0; i < num_rules; ++i) {
    std::string id = "gen.rule-" + std::to_string(i);
    std::string a = word() + std::to_string(rng() % 1000), b = word(), c = word();
    y += "  - id: " + id + "\n    duty: gen.duty\n    severity: medium\n    when:\n      all:\n";
    y += std::string("        - {field: surface, in: [") + kSurfaces[rng() % 12] + ", " +
         kSurfaces[rng() % 12] + "]}\n";
    if (i % 20 == 19) {
      // One rule in twenty uses the corpus's own vocabulary, so the scaled
      // rule set also flags reports and pays for conditions and verdicts.
      y += std::string("        - {field: text, phrases: [\"") + kSubjects[rng() % 15] + " " +
           kVerbs[rng() % 12] + "\"]}\n";
      continue;
    }
    switch (i % 3) {
      case 0:
        y += "        - {field: text, regex: '\\b" + a + "\\s+" + b + "\\b'}\n";
        break;
      case 1:
        y += "        - {field: text, phrases: [\"" + a + " " + b + "\", \"" + b + " " + c +
             std::to_string(i) + "\"]}\n";
        break;
      default:
        y += "        - {field: text, normalize: true, phrases: [\"" + b + " " + a + "\"]}\n";
        break;
    }
  }
  return y;
}

}  // namespace carewatch::corpus

namespace carewatch::corpus {

RealisticPack GenerateRealisticPack(const RealisticOptions& o) {
  std::mt19937_64 rng(o.seed);
  const char* const kOnsets[] = {"b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "t", "v", "z"};
  const char* const kVowels[] = {"a", "e", "i", "o", "u"};
  auto word = [&] {
    std::string w;
    for (int s = 0; s < 3; ++s) w += std::string(kOnsets[rng() % 13]) + kVowels[rng() % 5];
    return w + "x";  // no English word ends so: the filler never matches
  };
  const char* const kTextFields[] = {"text", "text", "text",    "text",        "text",
                                     "text", "text", "caption", "profile_bio", "display_name"};
  const char* const kSurfaces[] = {"direct_message", "group_chat",      "game_chat",
                                   "comment",        "livestream_chat", "public_post"};
  RealisticPack p;
  std::string& y = p.yaml;
  y = "# Generated for benchmarks (corpus::GenerateRealisticPack): made-up words,\n"
      "# synthetic list entries. Not a policy.\n"
      "pack: realistic\nversion: \"1\"\nduties:\n"
      "  - {id: scale.review, deadline: 24h, actions: [remove_content]}\n"
      "lists:\n  urls: {kind: url, file: lists/urls.txt}\n"
      "  hashes: {kind: hash, file: lists/md5.txt}\n"
      "rules:\n";
  auto rule_head = [&](const std::string& id) {
    y += "  - id: " + id + "\n    duty: scale.review\n    severity: medium\n    when:\n";
  };
  for (int i = 0; i < o.phrase_rules; ++i) {
    std::string field = kTextFields[rng() % 10];
    bool fold = field == "text" && rng() % 2;
    bool surface = rng() % 10 < 3;
    std::vector<std::string> phrases;
    for (int k = 0; k < 3; ++k) phrases.push_back(word() + " " + word());
    rule_head("scale.phrase-" + std::to_string(i));
    std::string leaf = "{field: " + field + (fold ? ", normalize: true" : "") + ", phrases: [" +
                       phrases[0] + ", " + phrases[1] + ", " + phrases[2] + "]}";
    std::string s1 = kSurfaces[rng() % 6], s2 = kSurfaces[rng() % 6];
    if (surface) {
      y += "      all:\n        - {field: surface, in: [" + s1 + ", " + s2 + "]}\n        - " +
           leaf + "\n";
    } else {
      y += "      " + leaf + "\n";
    }
    std::vector<v1::ContentReport> plants;
    for (const std::string& ph : phrases) {
      v1::ContentReport r;
      std::string value = fold && rng() % 2 ? std::string(ph).insert(2, "\u200B") : ph;
      if (fold) {  // an evasion the folding undoes: capitals, a digit for a letter
        for (char& c : value) c = c == 'o' ? '0' : static_cast<char>(std::toupper(c));
      }
      if (field == "text") r.set_text(value);
      if (field == "caption") r.set_caption(value);
      if (field == "profile_bio") r.set_profile_bio(value);
      if (field == "display_name") r.set_display_name(value);
      if (surface) r.set_surface(s1);
      plants.push_back(std::move(r));
    }
    p.plants.push_back(std::move(plants));
  }
  for (int i = 0; i < o.regex_rules; ++i) {
    std::string a = word(), b = word(), c = word(), d = word();
    bool fold = rng() % 2;
    rule_head("scale.regex-" + std::to_string(i));
    y += "      {field: text" + std::string(fold ? ", normalize: true" : "") + ", regex: '\\b(" +
         a + "|" + b + ")\\s+(\\w+\\s+)?(" + c + "|" + d + ")\\b'}\n";
    v1::ContentReport r;
    r.set_text(a + " x " + d);
    p.plants.push_back({r});
  }
  std::vector<v1::ContentReport> url_plants, hash_plants;
  char buf[96];
  for (size_t i = 0; i < o.list_entries; ++i) {
    std::snprintf(buf, sizeof buf, "h%llx.list.test/p/%llu\n",
                  static_cast<unsigned long long>(rng() % 400000),
                  static_cast<unsigned long long>(i));
    p.url_list += buf;
    if (i % (o.list_entries / 50 + 1) == 0) {
      v1::ContentReport r;
      r.add_urls("https://" + std::string(buf, std::strlen(buf) - 1) + "/x");
      url_plants.push_back(std::move(r));
    }
    std::snprintf(buf, sizeof buf, "%016llx%016llx\n", static_cast<unsigned long long>(rng()),
                  static_cast<unsigned long long>(rng()));
    p.hash_list += buf;
    if (i % (o.list_entries / 50 + 1) == 0) {
      v1::ContentReport r;
      v1::Hash* h = r.add_hashes();
      h->set_algorithm("md5");
      h->set_value(std::string(buf, 32));
      hash_plants.push_back(std::move(r));
    }
  }
  rule_head("scale.listed-url");
  y += "      {field: url, in_list: urls}\n";
  p.plants.push_back(std::move(url_plants));
  rule_head("scale.listed-hash");
  y += "      {field: hash, in_list: hashes}\n";
  p.plants.push_back(std::move(hash_plants));
  return p;
}

}  // namespace carewatch::corpus
