#!/usr/bin/env python3
"""Checks a carewatch report's page (as Chromium rendered it, or the file).

  report_dom.py PAGE FINDINGS VERDICT [SERVICE=STATS.jsonl ...]

FINDINGS: the number of findings the page must show (a row in the findings
table, a timeline and an evidence section each). VERDICT: what the cover
must say (all | partial | failed). Each SERVICE=STATS.jsonl: the lines of
`carewatch audit stats --json` for that service; every period's figures in
the page's trend table must equal them, period for period.
"""
import json
import sys
from html.parser import HTMLParser


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.finding_rows = 0
        self.timelines = 0
        self.evidence = 0
        self.verdict = None
        self.trends = {}  # service -> period -> metric -> value
        self.service = None
        self.period = None
        self.metric = None
        self.text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        classes = (a.get("class") or "").split()
        if tag == "tr" and "finding" in classes:
            self.finding_rows += 1
        if tag == "svg" and "timeline" in classes:
            self.timelines += 1
        if tag == "section" and "evidence" in classes:
            self.evidence += 1
        if a.get("id") == "verification":
            self.verdict = a.get("data-verified")
        if tag == "table" and "trend-table" in classes:
            self.service = a.get("data-service")
            self.trends.setdefault(self.service, {})
        if tag == "tr" and self.service is not None and "data-period" in a:
            self.period = a["data-period"]
            self.trends[self.service][self.period] = {}
        if tag == "td" and self.period is not None and "data-metric" in a:
            self.metric = a["data-metric"]
            self.text = ""

    def handle_data(self, data):
        if self.metric:
            self.text += data

    def handle_endtag(self, tag):
        if tag == "td" and self.metric:
            value = int(self.text.replace(",", "").strip())
            self.trends[self.service][self.period][self.metric] = value
            self.metric = None
        if tag == "table":
            self.service = None
            self.period = None


def main():
    page = Page()
    page.feed(open(sys.argv[1], encoding="utf-8").read())
    findings, verdict = int(sys.argv[2]), sys.argv[3]
    errors = []
    for name, got in (("finding rows", page.finding_rows), ("timelines", page.timelines),
                      ("evidence sections", page.evidence)):
        if got != findings:
            errors.append("%s: %d, expected %d" % (name, got, findings))
    if page.verdict != verdict:
        errors.append("cover verdict: %s, expected %s" % (page.verdict, verdict))
    periods = 0
    for arg in sys.argv[4:]:
        service, path = arg.split("=", 1)
        table = page.trends.get(service)
        if table is None:
            errors.append("no trend table for " + service)
            continue
        expected = [json.loads(line) for line in open(path) if line.strip()]
        if sorted(table) != [e["period"] for e in expected]:
            errors.append("%s periods: %s, audit stats: %s" %
                          (service, sorted(table), [e["period"] for e in expected]))
        for e in expected:
            row = table.get(e["period"], {})
            # The protobuf JSON mapping: int64 as strings, zeros left out,
            # breakdowns as [{key, count}].
            kinds = {k["key"]: int(k["count"]) for k in e.get("breaches_by_kind", [])}
            n = lambda key: int(e.get(key, 0))
            want = {"reports": n("reports"), "flagged": n("flagged"),
                    "obligations": n("obligations"), "breaches": n("breaches"),
                    "findings": n("findings"), "missed": kinds.get("missed", 0),
                    "late": kinds.get("late", 0), "late_recorded": kinds.get("late_recorded", 0)}
            for metric, value in want.items():
                if row.get(metric) != value:
                    errors.append("%s %s %s: page %s, audit stats %s" %
                                  (service, e["period"], metric, row.get(metric), value))
            periods += 1
    if errors:
        print("\n".join(errors))
        sys.exit(1)
    print("page: %d findings with timelines and evidence, cover '%s', %d periods equal to "
          "audit stats" % (findings, verdict, periods))


if __name__ == "__main__":
    main()
