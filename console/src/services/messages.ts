// The service clients' errors in words, Japanese and English: the same sentences as
// `enkaku session ...` (messages.json is generated from enkaku.i18n's catalog by
// tests/protocol/console_vectors.py), plus the few the page needs of its own.
// Consent refusals (ConsentRefused) are the page's catalog's (ui/consent.ts).

import catalog from "./messages.json";
import { ConsentRefused } from "./common";
import { TransferError } from "./files";
import { ScreenshotError } from "./screenshot";
import { SysinfoError } from "./sysinfo";
import { type TerminalEnd, TerminalOpenError } from "./terminal";
import { TypeTextError } from "./typetext";

export type Lang = "en" | "ja";

type Entry = readonly [string, string];

const OWN: Record<string, Entry> = {
  terminal_exited: ["The shell exited with status {status}.", "シェルは終了ステータス {status} で終了しました。"],
  terminal_hung_up: ["Disconnected; the remote shell was hung up.", "切断しました。リモートのシェルは終了させました。"],
  terminal_bad_frame: [
    "The customer's computer sent invalid terminal data; the terminal was closed.",
    "お客様のコンピューターから不正な端末データが届いたため、端末を閉じました。",
  ],
  terminal_whose: ["Shell of {user} on the customer's computer.", "お客様のコンピューターの {user} のシェルです。"],
  screenshot_cancelled: ["The screenshot was cancelled.", "スクリーンショットはキャンセルされました。"],
  typed: ["Typed {count} keys on the customer's screen.", "お客様の画面に {count} 文字を入力しました。"],
  typetext_err_bad_answer: [
    "The customer's computer answered in a way this console does not understand.",
    "お客様のコンピューターからの応答をこのコンソールでは解釈できませんでした。",
  ],
  files_archive_note: [
    "A folder arrives as one .tar archive of it.",
    "フォルダーは 1 つの .tar アーカイブとして届きます。",
  ],
};

const TABLE = catalog as unknown as Record<string, Entry>;

/** The sentence for `key` in `lang`, with `{name}` fields filled in (and cut to a
 * printable length: fields may come from the customer's computer). */
export function message(key: string, lang: Lang, fields: Record<string, unknown> = {}): string {
  const entry = OWN[key] ?? TABLE[key];
  if (entry === undefined) return key;
  const text = lang === "ja" ? entry[1] : entry[0];
  return text.replace(/\{(\w+)\}/g, (_, name: string) => {
    const value = String(fields[name] ?? `{${name}}`);
    return value.replace(/[\p{Cc}\p{Cf}]/gu, "").slice(0, 200);
  });
}

function filesMessage(reason: string, lang: Lang): string {
  return `files_err_${reason}` in TABLE ? message(`files_err_${reason}`, lang) : message("files_err_other", lang, { reason });
}

/** What went wrong with a service, in words; null for an error that is not a
 * service's (ConsentRefused, SessionEnded: the page's own catalog says those). */
export function serviceErrorMessage(err: unknown, lang: Lang): string | null {
  if (err instanceof ConsentRefused) return null;
  if (err instanceof TransferError) return filesMessage(err.reason, lang);
  if (err instanceof TypeTextError) {
    const key = `typetext_err_${err.reason}`;
    return key in TABLE || key in OWN ? message(key, lang) : message("typetext_err_other", lang, { reason: err.reason });
  }
  if (err instanceof ScreenshotError) {
    switch (err.code) {
      case "refused":
        return message("screenshot_refused", lang, { reason: err.detail ?? "" });
      case "too_large":
        return message("screenshot_too_large", lang, { limit: "128 MiB" });
      case "cancelled":
        return message("screenshot_cancelled", lang);
      default:
        return message(`screenshot_${err.code}`, lang);
    }
  }
  if (err instanceof SysinfoError) {
    switch (err.code) {
      case "too_large":
        return message("sysinfo_fetch_too_large", lang, { limit: 8 });
      case "reset":
        return message("sysinfo_fetch_reset", lang, { reason: err.detail ?? "" });
      case "invalid":
        return message("sysinfo_fetch_invalid", lang, { detail: err.detail ?? "" });
      default:
        return message("sysinfo_fetch_not_object", lang);
    }
  }
  if (err instanceof TerminalOpenError) return message("terminal_refused", lang, { reason: err.reason });
  return null;
}

/** How a terminal ended, in words. */
export function terminalEndMessage(end: TerminalEnd, lang: Lang): string {
  if (end.how === "exit") return message("terminal_exited", lang, { status: end.status });
  if (end.reason === "detached") return message("terminal_hung_up", lang);
  if (end.reason === "bad_frame") return message("terminal_bad_frame", lang);
  if (end.reason === "eof") return message("terminal_no_status", lang);
  return message("terminal_refused", lang, { reason: end.reason });
}
