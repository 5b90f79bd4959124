#include "engine/rules/vocabulary.h"

#include <algorithm>

namespace carewatch::rules {

const std::vector<std::string>& KnownValues(Field field) {
  static const std::vector<std::string> kSurface = {
      "public_post", "comment", "direct_message", "group_chat", "livestream", "livestream_chat",
      "game_chat",   "profile", "search",         "file_share", "other"};
  static const std::vector<std::string> kContentType = {"text", "image",      "video",   "audio",
                                                        "link", "livestream", "account", "other"};
  static const std::vector<std::string> kReporterType = {"user",
                                                         "trusted_flagger",
                                                         "automated_detection",
                                                         "law_enforcement",
                                                         "hotline",
                                                         "parent_or_guardian",
                                                         "other"};
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
  static const std::vector<std::string> kActions = {
      "remove_content",  "restrict_account",       "suspend_account",   "report_to_nca",
      "report_to_ncmec", "escalate_to_specialist", "preserve_evidence", kReviewedNotIllegal};
  return kActions;
}

bool IsKnownAction(const std::string& action) {
  const auto& known = KnownActions();
  return std::find(known.begin(), known.end(), action) != known.end();
}

}  // namespace carewatch::rules
