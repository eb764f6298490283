// System information: ask, read the report, show the findings first, then each group's
// sections; export as JSON or text (files made in the page, nothing sent anywhere).

import { lang, onLangChange, t } from "../../i18n";
import {
  type ReportView,
  type ValueView,
  fetchSystemInfo,
  reportToJson,
  reportToText,
  reportView,
  type Report,
} from "../../services/sysinfo";
import { el, byId, showMessage } from "../common";
import type { PanelContext } from "../panels";
import { toolErrorText } from "../panels";

function valueNode(v: ValueView): Node {
  switch (v.type) {
    case "text":
      return document.createTextNode(v.text);
    case "unavailable":
      return el("span", { class: "hint" }, v.why);
    case "fields": {
      const dl = el("dl", { class: "kv" });
      for (const row of v.rows) dl.append(el("dt", {}, row.label), el("dd", {}, valueNode(row.value)));
      return dl;
    }
    case "table": {
      const table = el("table", {}, el("thead", {}, el("tr", {}, ...v.columns.map((c) => el("th", {}, c.label)))));
      const body = el("tbody");
      for (const row of v.rows) body.append(el("tr", {}, ...row.map((cell) => el("td", {}, valueNode(cell)))));
      table.append(body);
      return el("div", { class: "table-wrap" }, table);
    }
  }
}

function render(view: ReportView): Node[] {
  const out: Node[] = [el("h3", {}, view.findingsTitle)];
  if (view.noFindings) out.push(el("p", {}, view.noFindings));
  for (const f of view.findings) {
    const box = el(
      "div",
      { class: "finding", "data-severity": f.severity },
      el("strong", {}, `${f.severityLabel}: ${f.title}`),
      el("p", {}, f.explanation),
    );
    if (f.evidence.length) {
      const dl = el("dl", { class: "kv" });
      for (const e of f.evidence) dl.append(el("dt", {}, e.label), el("dd", {}, e.value));
      box.append(dl);
    }
    out.push(box);
  }
  out.push(el("p", { class: "hint" }, view.collected));
  for (const group of view.groups) {
    out.push(el("h3", {}, group.label));
    for (const section of group.sections) {
      const details = el("details", {}, el("summary", {}, section.label));
      if (!section.ok) details.append(el("p", { class: "hint" }, `${view.unavailableLabel}: ${section.why ?? ""}`));
      else if (section.value) details.append(valueNode(section.value));
      out.push(details);
    }
  }
  return out;
}

function download(name: string, type: string, text: string): void {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

export function setupSysinfo(ctx: PanelContext): void {
  const panel = byId("panel-sysinfo");
  const get = el("button", { type: "button", id: "sysinfo-get", "data-i18n": "sysinfo_get" }, t("sysinfo_get"));
  const exportJson = el("button", { type: "button", id: "sysinfo-json", "data-i18n": "export_json", hidden: "" }, t("export_json"));
  const exportText = el("button", { type: "button", id: "sysinfo-text", "data-i18n": "export_text", hidden: "" }, t("export_text"));
  const message = el("p", { class: "message", role: "alert", hidden: "" });
  const body = el("div", { id: "sysinfo-report" });
  panel.append(el("div", { class: "row" }, get, exportJson, exportText), message, body);
  let report: Report | null = null;
  const show = () => {
    if (report) body.replaceChildren(...render(reportView(report, lang())));
  };
  get.addEventListener("click", async () => {
    get.disabled = true;
    showMessage(message, t("loading"), "info");
    try {
      report = await fetchSystemInfo(ctx.session, {
        onAsking: () => showMessage(message, t("asking_customer"), "info"),
      });
      showMessage(message, null);
      show();
      exportJson.hidden = false;
      exportText.hidden = false;
    } catch (e) {
      showMessage(message, toolErrorText(e));
    } finally {
      get.disabled = false;
    }
  });
  exportJson.addEventListener("click", () => report && download("system-info.json", "application/json", reportToJson(report)));
  exportText.addEventListener("click", () => report && download("system-info.txt", "text/plain;charset=utf-8", reportToText(report, lang())));
  onLangChange(show);
}
