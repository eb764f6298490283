// The system information report (stream kind and action `system_info`): ask, read the
// one JSON document the agent sends, and present it findings first, as a view model
// for the panel, as JSON (the same document as `enkaku session info --json`) and as
// plain text. Mirrors src/enkaku/technician/sysinfo.py and the renderers of
// src/enkaku/agent/sysinfo/report.py; labels come from sysinfo-labels.json, generated
// from the Python tables (docs/system-info.md).
//
// Every value comes from the customer's machine: the view model holds plain strings
// (never HTML) with control and format characters removed.

import labels from "./sysinfo-labels.json";
import {
  type ServiceSession,
  type ServiceStream,
  concat,
  obtainGrant,
  openWithGrant,
  quietReset,
  resetReason,
} from "./common";

export const SYSINFO_KIND = "system_info";
export const SYSINFO_ACTION = "system_info";
/** A report larger than this is refused (real ones are tens of KiB). */
export const SYSINFO_MAX_BYTES = 8 * 1024 * 1024;
export const RESET_TOO_LARGE = "system_info_too_large";
/** Nesting deeper than this is shown as compact JSON text. */
export const MAX_DEPTH = 6;

export type Lang = "en" | "ja";
export type Severity = "critical" | "warning" | "info";
export const SEVERITIES: readonly Severity[] = ["critical", "warning", "info"];

/** The report as the agent sent it (a JSON object; any shape, checked on use). */
export type Report = Record<string, unknown>;

/** The report could not be read. `code`: `too_large`, `reset` (the agent reset the
 * stream; `detail` is its reason), `invalid` (not UTF-8 JSON), `not_object`. */
export class SysinfoError extends Error {
  readonly code: "too_large" | "reset" | "invalid" | "not_object";
  readonly detail?: string;
  constructor(code: SysinfoError["code"], detail?: string) {
    super(detail === undefined ? `system information: ${code}` : `system information: ${code} (${detail})`);
    this.name = "SysinfoError";
    this.code = code;
    if (detail !== undefined) this.detail = detail;
  }
}

/** Read a `system_info` stream to EOF; the report object. Throws SysinfoError. */
export async function readReport(stream: ServiceStream): Promise<Report> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    let chunk: Uint8Array | null;
    try {
      chunk = await stream.read();
    } catch (err) {
      const reason = resetReason(err);
      if (reason !== null) throw new SysinfoError("reset", reason.slice(0, 64));
      throw err;
    }
    if (chunk === null) break;
    size += chunk.length;
    if (size > SYSINFO_MAX_BYTES) {
      await quietReset(stream, RESET_TOO_LARGE);
      throw new SysinfoError("too_large");
    }
    chunks.push(chunk);
  }
  await stream.writeEof().catch(() => {}); // both ends done: the mux forgets the stream
  const bytes = concat(chunks, size);
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new SysinfoError("invalid", "not UTF-8");
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new SysinfoError("invalid", String((err as Error).message).slice(0, 120));
  }
  if (typeof doc !== "object" || doc === null || Array.isArray(doc)) {
    throw new SysinfoError("not_object");
  }
  return doc as Report;
}

export interface FetchOptions {
  /** Why the technician asks, shown to the customer. */
  purpose?: string;
  /** Called when the customer is being asked (the grant is not in force yet). */
  onAsking?: (action: string) => void;
}

/** Ask for `system_info` (unless in force), open the stream and read the report.
 * Throws ConsentRefused, SysinfoError, or the channel's SessionEnded. */
export async function fetchSystemInfo(session: ServiceSession, opts: FetchOptions = {}): Promise<Report> {
  const grant = await obtainGrant(session, SYSINFO_ACTION, {}, opts.purpose, opts.onAsking);
  const stream = await openWithGrant(session, SYSINFO_KIND, {}, grant);
  return readReport(stream);
}

// -- presentation ---------------------------------------------------------------------

type Pair = [string, string];
const table = labels as unknown as {
  group_sections: Record<string, string[]>;
  groups: Record<string, Pair>;
  sections: Record<string, Pair>;
  fields: Record<string, Pair>;
  byte_fields: string[];
  strings: Record<string, Pair>;
};
const BYTE_FIELDS = new Set(table.byte_fields);

function pick(pair: Pair | undefined, lang: Lang, fallback: string): string {
  return pair === undefined ? fallback : lang === "ja" ? pair[1] : pair[0];
}

/** One of the report's own strings ("title", "findings", "evidence", ...), with
 * `{name}` fields filled in. */
export function reportString(key: string, lang: Lang, fields: Record<string, unknown> = {}): string {
  const text = pick(table.strings[key], lang, key);
  return text.replace(/\{(\w+)\}/g, (_, name: string) => String(fields[name] ?? `{${name}}`));
}

export function groupLabel(name: string, lang: Lang): string {
  return pick(table.groups[name], lang, name);
}

export function sectionLabel(name: string, lang: Lang): string {
  return pick(table.sections[name], lang, name);
}

export function fieldLabel(name: string, lang: Lang): string {
  return pick(table.fields[name], lang, name);
}

/** Bytes as the Python report shows them: "512 B", "1.5 KiB", ... "5.0 TiB". */
export function humanBytes(n: number): string {
  for (const unit of ["B", "KiB", "MiB", "GiB", "TiB"]) {
    if (Math.abs(n) < 1024 || unit === "TiB") {
      return unit === "B" ? `${pyRound0(n)} ${unit}` : `${n.toFixed(1)} ${unit}`;
    }
    n /= 1024;
  }
  return `${n.toFixed(1)} TiB`;
}

function pyRound0(n: number): string {
  // Python's "{:.0f}" rounds half to even.
  const r = Math.round(n);
  return String(Math.abs(n % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r);
}

/** Text from the customer's machine, safe to show: control and format characters
 * removed, line breaks and tabs as spaces, cut at `limit` characters (i18n.printable). */
export function printable(text: string, limit = 256): string {
  let out = "";
  let n = 0;
  for (const ch of text) {
    if (n >= limit) break;
    if (/[\n\r\t\v\f\u0085\u2028\u2029]/u.test(ch)) out += " ";
    else if (/[\p{Cc}\p{Cf}\p{Cs}]/u.test(ch)) continue;
    else out += ch;
    n += 1;
  }
  return out;
}

function isPair(value: unknown): value is { en: unknown; ja: unknown } {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return false;
  const keys = Object.keys(value);
  return keys.length === 2 && keys.includes("en") && keys.includes("ja");
}

function langText(value: unknown, lang: Lang): string {
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const v = value as Record<string, unknown>;
    value = lang in v ? v[lang] : (v.en ?? "");
  }
  return value === null || value === undefined ? "" : String(value);
}

function uptime(seconds: number): string {
  const days = Math.floor(seconds / 86400);
  const rest = seconds - days * 86400;
  return `${days}d ${Math.floor(rest / 3600)}h ${Math.floor((rest % 3600) / 60)}m`;
}

/** One value as plain text (report.scalar). */
export function scalar(key: string, value: unknown, lang: Lang): string {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return reportString(value ? "yes" : "no", lang);
  if (typeof value === "number" && BYTE_FIELDS.has(key)) return humanBytes(value);
  if (typeof value === "number" && key === "uptime_s") return uptime(Math.trunc(value));
  if (isPair(value)) return langText(value, lang);
  if (Array.isArray(value) && value.every((v) => typeof v !== "object" || v === null)) {
    return value.map((v) => scalar(key, v, lang)).join(", ") || reportString("none", lang);
  }
  if (typeof value === "object") return JSON.stringify(value).slice(0, 2000);
  return String(value);
}

export interface FindingView {
  readonly id: string;
  readonly severity: Severity;
  /** The severity in words ("Critical" / "重大"). */
  readonly severityLabel: string;
  readonly title: string;
  readonly explanation: string;
  readonly evidence: ReadonlyArray<{ key: string; label: string; value: string }>;
}

/** A value of a section, as nested key/value rows or a table. */
export type ValueView =
  | { readonly type: "text"; readonly text: string }
  | { readonly type: "unavailable"; readonly why: string }
  | {
      readonly type: "fields";
      readonly rows: ReadonlyArray<{ key: string; label: string; value: ValueView }>;
    }
  | {
      readonly type: "table";
      readonly columns: ReadonlyArray<{ key: string; label: string }>;
      readonly rows: ReadonlyArray<ReadonlyArray<ValueView>>;
    };

export interface SectionView {
  readonly name: string;
  readonly label: string;
  readonly ok: boolean;
  /** Why the section could not be read (when not ok). */
  readonly why: string | null;
  readonly value: ValueView | null;
}

export interface GroupView {
  readonly name: string;
  readonly label: string;
  readonly sections: readonly SectionView[];
}

export interface ReportView {
  readonly title: string;
  /** "Collected at ... in ... s." */
  readonly collected: string;
  readonly findingsTitle: string;
  readonly findings: readonly FindingView[];
  /** The sentence shown when there are no findings, else null. */
  readonly noFindings: string | null;
  readonly evidenceLabel: string;
  readonly unavailableLabel: string;
  readonly groups: readonly GroupView[];
}

function asRecord(value: unknown): Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

/** The findings the report carries (the agent computes them), most severe first. */
export function reportFindings(report: Report): Record<string, unknown>[] {
  const carried = report.findings;
  if (!Array.isArray(carried)) return [];
  return carried.filter((f): f is Record<string, unknown> => typeof f === "object" && f !== null && !Array.isArray(f));
}

function severityOf(f: Record<string, unknown>): Severity {
  const sev = f.severity;
  return typeof sev === "string" && (SEVERITIES as readonly string[]).includes(sev) ? (sev as Severity) : "info";
}

function valueView(key: string, value: unknown, lang: Lang, depth: number): ValueView {
  if (depth >= MAX_DEPTH || isPair(value)) return { type: "text", text: printable(scalar(key, value, lang), 2000) };
  if (typeof value === "object" && value !== null && !Array.isArray(value)) {
    const obj = value as Record<string, unknown>;
    if (obj.ok === false && "why" in obj) return { type: "unavailable", why: printable(langText(obj.why, lang), 500) };
    return {
      type: "fields",
      rows: Object.entries(obj)
        .filter(([k]) => k !== "ok")
        .map(([k, v]) => ({ key: k, label: printable(fieldLabel(k, lang), 64), value: valueView(k, v, lang, depth + 1) })),
    };
  }
  if (Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === "object" && v !== null && !Array.isArray(v))) {
    const columns: string[] = [];
    for (const row of value as Record<string, unknown>[]) {
      for (const k of Object.keys(row)) if (k !== "ok" && !columns.includes(k)) columns.push(k);
    }
    return {
      type: "table",
      columns: columns.map((c) => ({ key: c, label: printable(fieldLabel(c, lang), 64) })),
      rows: (value as Record<string, unknown>[]).map((row) => columns.map((c) => valueView(c, row[c], lang, depth + 1))),
    };
  }
  return { type: "text", text: printable(scalar(key, value, lang), 2000) };
}

/** Groups and their sections present in the report, in the agent's order; unknown
 * sections last, under "other". */
function orderedSections(sections: Record<string, unknown>): Array<[string, string[]]> {
  const known = new Set(Object.values(table.group_sections).flat());
  const out: Array<[string, string[]]> = [];
  for (const [group, names] of Object.entries(table.group_sections)) {
    const present = names.filter((n) => n in sections);
    if (present.length) out.push([group, present]);
  }
  const extra = Object.keys(sections).filter((s) => !known.has(s));
  if (extra.length) out.push(["other", extra]);
  return out;
}

/** Everything the panel shows, in `lang`: findings first, then each group's sections. */
export function reportView(report: Report, lang: Lang): ReportView {
  const findings = reportFindings(report).map((f): FindingView => {
    const severity = severityOf(f);
    return {
      id: printable(String(f.id ?? ""), 64),
      severity,
      severityLabel: reportString(`severity_${severity}`, lang),
      title: printable(langText(f.title ?? "", lang), 300),
      explanation: printable(langText(f.explanation ?? "", lang), 1000),
      evidence: Object.entries(asRecord(f.evidence)).map(([k, v]) => ({
        key: k,
        label: printable(fieldLabel(k, lang), 64),
        value: printable(scalar(k, v, lang), 300),
      })),
    };
  });
  const sections = asRecord(report.sections);
  const groups = orderedSections(sections).map(([group, names]): GroupView => ({
    name: group,
    label: groupLabel(group, lang),
    sections: names.map((name): SectionView => {
      const sec = asRecord(sections[name]);
      const label = printable(sectionLabel(name, lang), 64);
      if (sec.ok === true) return { name, label, ok: true, why: null, value: valueView(name, sec.data, lang, 0) };
      return { name, label, ok: false, why: printable(langText(sec.why ?? "", lang), 500), value: null };
    }),
  }));
  return {
    title: reportString("title", lang),
    collected: reportString("collected", lang, {
      when: printable(String(report.collected_at || "?"), 64),
      seconds: printable(String(report.duration_s || "?"), 16),
    }),
    findingsTitle: reportString("findings", lang),
    findings,
    noFindings: findings.length ? null : reportString("no_findings", lang),
    evidenceLabel: reportString("evidence", lang),
    unavailableLabel: reportString("unavailable", lang),
    groups,
  };
}

/** The report as JSON with its findings first (report.to_json: one-space indent). */
export function reportToJson(report: Report): string {
  const doc: Record<string, unknown> = { format: report.format ?? null, findings: reportFindings(report) };
  for (const [k, v] of Object.entries(report)) if (!(k in doc)) doc[k] = v;
  return JSON.stringify(doc, null, 1);
}

function textValue(value: ValueView, indent: string): string[] {
  switch (value.type) {
    case "text":
      return [indent + value.text];
    case "unavailable":
      return [indent + value.why];
    case "fields":
      return value.rows.flatMap((row) =>
        row.value.type === "text" || row.value.type === "unavailable"
          ? [`${indent}${row.label}: ${row.value.type === "text" ? row.value.text : row.value.why}`]
          : [`${indent}${row.label}:`, ...textValue(row.value, indent + "  ")],
      );
    case "table":
      return value.rows.flatMap((row, i) => [
        `${indent}[${i + 1}]`,
        ...row.flatMap((cell, c) => {
          const label = value.columns[c]!.label;
          return cell.type === "text" || cell.type === "unavailable"
            ? [`${indent}  ${label}: ${cell.type === "text" ? cell.text : cell.why}`]
            : [`${indent}  ${label}:`, ...textValue(cell, indent + "    ")];
        }),
      ]);
  }
}

/** The report as plain text in `lang` (for a .txt export or a ticket): title, findings
 * with their evidence, then every section. */
export function reportToText(report: Report, lang: Lang): string {
  const view = reportView(report, lang);
  const lines = [view.title, view.collected, "", `== ${view.findingsTitle} ==`];
  for (const f of view.findings) {
    lines.push(`[${f.severityLabel}] ${f.title}`, `  ${f.explanation}`);
    if (f.evidence.length) {
      lines.push(`  ${view.evidenceLabel}: ${f.evidence.map((e) => `${e.label}: ${e.value}`).join("; ")}`);
    }
  }
  if (view.noFindings !== null) lines.push(view.noFindings);
  for (const group of view.groups) {
    lines.push("", `== ${group.label} ==`);
    for (const section of group.sections) {
      lines.push(`-- ${section.label}`);
      if (section.ok && section.value !== null) lines.push(...textValue(section.value, "  "));
      else lines.push(`  ${view.unavailableLabel}: ${section.why ?? ""}`);
    }
  }
  return lines.join("\n") + "\n";
}
