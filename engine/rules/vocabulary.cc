#include "engine/rules/vocabulary.h"

#include <algorithm>
#include <vector>

namespace carewatch::rules {

const std::vector<std::string>& KnownValues(Field field) {
  static const std::vector<std::string> kSurface = {
      "public_post", "comment", "direct_message", "group_chat", "livestream",     "livestream_chat",
      "game_chat",   "profile", "search",         "file_share", "cross_platform", "other"};
  static const std::vector<std::string> kContentType = {"text", "image",      "video",   "audio",
                                                        "link", "livestream", "account", "other"};
  static const std::vector<std::string> kReporterType = {
      "user",    "trusted_flagger",    "automated_detection", "law_enforcement",
      "hotline", "parent_or_guardian", "carewatch",           "other"};
  static const std::vector<std::string> kAgeBand = {"unknown", "under_13", "13_to_15", "16_to_17",
                                                    "adult"};
  static const std::vector<std::string> kNone;
  switch (field) {
    case Field::kSurface:
      return kSurface;
    case Field::kContentType:
      return kContentType;
    case Field::kReporterType:
      return kReporterType;
    case Field::kSubjectAgeBand:
      return kAgeBand;
    default:
      return kNone;
  }
}

const std::vector<std::string>& KnownActions() {
  static const std::vector<std::string> kActions = {"remove_content",    "restrict_account",
                                                    "suspend_account",   "report_to_nca",
                                                    "report_to_ncmec",   "escalate_to_specialist",
                                                    "preserve_evidence", "review_linked_account",
                                                    kReviewedNotIllegal, kLinkWithdrawn};
  return kActions;
}

std::string DidYouMean(const std::string& value, const std::vector<std::string>& known) {
  if (value.empty() || value.size() > 64) return "";
  // Levenshtein distance, one row at a time.
  auto distance = [](const std::string& a, const std::string& b) {
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
      size_t diagonal = row[0];
      row[0] = i;
      for (size_t j = 1; j <= b.size(); ++j) {
        size_t up = row[j];
        row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
        diagonal = up;
      }
    }
    return row[b.size()];
  };
  std::string best;
  size_t best_distance = std::max<size_t>(2, value.size() / 4) + 1;
  for (const std::string& k : known) {
    if (k.size() > 64) continue;
    size_t d = distance(value, k);
    if (d < best_distance) {
      best = k;
      best_distance = d;
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

bool IsKnownAction(const std::string& action) {
  const auto& known = KnownActions();
  return std::find(known.begin(), known.end(), action) != known.end();
}

}  // namespace carewatch::rules
