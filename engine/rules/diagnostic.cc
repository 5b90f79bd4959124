#include "engine/rules/diagnostic.h"

namespace carewatch::rules {

std::string Diagnostic::ToString() const {
  std::string out = pos.file;
  if (pos.line > 0) {
    out += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.col);
  }
  out += level == Level::kError ? ": error: " : ": warning: ";
  out += message;
  if (!rule_id.empty()) out += " [" + rule_id + "]";
  return out;
}

bool HasErrors(const std::vector<Diagnostic>& diagnostics) {
  for (const Diagnostic& d : diagnostics) {
    if (d.level == Diagnostic::Level::kError) return true;
  }
  return false;
}

}  // namespace carewatch::rules
