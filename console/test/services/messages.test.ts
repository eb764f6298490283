import { describe, expect, it } from "vitest";
import { ConsentRefused } from "../../src/services/common";
import { TransferError } from "../../src/services/files";
import { message, serviceErrorMessage, terminalEndMessage } from "../../src/services/messages";
import { ScreenshotError } from "../../src/services/screenshot";
import { SysinfoError } from "../../src/services/sysinfo";
import { TerminalOpenError } from "../../src/services/terminal";
import { TypeTextError } from "../../src/services/typetext";

describe("service errors in words", () => {
  it("say each failure in both languages, in the CLI's words", () => {
    const cases: Array<[unknown, string, string]> = [
      [new TransferError("exists"), "already exists", "すでに存在します"],
      [new TransferError("hash_mismatch"), "SHA-256", "SHA-256"],
      [new TransferError("weird_new_reason"), "The transfer failed (weird_new_reason).", "転送に失敗しました (weird_new_reason)。"],
      [new TypeTextError("control_paused"), "paused remote control", "一時停止"],
      [new TypeTextError("bad_answer"), "does not understand", "解釈できません"],
      [new ScreenshotError("no_display"), "no screen to capture", "キャプチャできる画面がありません"],
      [new ScreenshotError("refused", "service_error"), "(service_error)", "service_error"],
      [new SysinfoError("too_large"), "8 MiB", "8 MiB"],
      [new TerminalOpenError("spawn_failed"), "closed the terminal (spawn_failed)", "spawn_failed"],
    ];
    for (const [err, en, ja] of cases) {
      expect(serviceErrorMessage(err, "en")).toContain(en);
      expect(serviceErrorMessage(err, "ja")).toContain(ja);
    }
    expect(serviceErrorMessage(new ConsentRefused("screenshot", "denied"), "en")).toBeNull();
    expect(serviceErrorMessage(new Error("x"), "en")).toBeNull();
  });

  it("terminal endings and fields from the peer", () => {
    expect(terminalEndMessage({ how: "exit", status: 0 }, "en")).toBe("The shell exited with status 0.");
    expect(terminalEndMessage({ how: "closed", reason: "detached" }, "ja")).toContain("切断");
    expect(terminalEndMessage({ how: "closed", reason: "eof" }, "en")).toContain("without an exit status");
    expect(message("screenshot_refused", "en", { reason: "a\u202eb\x1b" })).toContain("(ab)");
  });
});
