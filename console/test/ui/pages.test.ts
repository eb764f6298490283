// The console pages' pure parts: the catalog, formatting, contract filter, API errors,
// the lossless encodings list, the session ticket.

import { afterEach, describe, expect, it, vi } from "vitest";
import {
  ApiError,
  asNotice,
  contracts,
  noticeText,
  request,
  setCsrfToken,
  validToday,
  type Contract,
} from "../../src/api";
import { bytesText, durationText, entries, reasonText, setLang, t, waitText } from "../../src/i18n";
import { withoutJpeg } from "../../src/ui/encodings";
import { END_REASONS } from "../../src/protocol/control";

describe("catalog", () => {
  it("has every end reason in words, both languages", () => {
    for (const reason of END_REASONS) {
      setLang("en");
      const en = reasonText(reason);
      setLang("ja");
      const ja = reasonText(reason);
      expect(en).not.toBe(reason);
      expect(ja).not.toBe(en);
    }
    expect(reasonText("something_new")).toBe("something_new");
  });

  it("fills the same placeholders in both languages", () => {
    setLang("en");
    expect(t("err_locked", { wait: waitText(45) })).toBe("Too many failed attempts. Try again in 45 seconds.");
    setLang("ja");
    expect(t("err_locked", { wait: waitText(300) })).toContain("5 分後");
    setLang("en");
  });

  it("every entry names the same placeholders in English and Japanese", () => {
    const names = (text: string) => (text.match(/\{\w+\}/g) ?? []).sort();
    for (const [key, en, ja] of entries()) {
      expect(names(ja), key).toEqual(names(en));
      expect(ja.trim(), key).not.toBe("");
    }
  });
});

describe("formatting", () => {
  it("bytes, durations, waits", () => {
    expect(bytesText(999)).toBe("999 B");
    expect(bytesText(3_800)).toBe("3.8 KB");
    expect(bytesText(12_345_678)).toBe("12 MB");
    expect(durationText(61)).toBe("1:01");
    expect(durationText(3_725)).toBe("1:02:05");
    expect(waitText(119)).toBe("119 seconds");
    expect(waitText(121)).toBe("3 minutes");
  });
});

describe("contracts valid today", () => {
  const c = (code: string, from: string, until: string | null, remote = true): Contract => ({
    code, customer_name: "X", remote_support: remote, valid_from: from, valid_until: until,
  });
  it("keeps only those in force with remote support", () => {
    const today = new Date(2026, 10, 29);
    const list = [
      c("A", "2026-01-01", null),
      c("B", "2026-11-30", null), // starts tomorrow
      c("C", "2025-01-01", "2026-11-28"), // ended yesterday
      c("D", "2026-11-29", "2026-11-29"), // today only
      c("E", "2026-01-01", null, false), // no remote support
    ];
    expect(validToday(list, today).map((x) => x.code)).toEqual(["A", "D"]);
  });
});

describe("lossless", () => {
  it("drops exactly the JPEG quality levels", () => {
    const noVnc = [1, 7, -260, 16, 0, -32, -26, -23, -24, -247, -223, -258, -33, -22];
    expect(withoutJpeg(noVnc)).toEqual([1, 7, -260, 16, 0, -247, -223, -258, -33, -22]);
  });
});

describe("api client", () => {
  afterEach(() => {
    vi.unstubAllGlobals();
    setCsrfToken(null);
    setLang("en");
  });

  function stubFetch(status: number, body: unknown, headers: Record<string, string> = {}) {
    const calls: { url: string; init: RequestInit }[] = [];
    vi.stubGlobal("fetch", async (url: string, init: RequestInit) => {
      calls.push({ url, init });
      return new Response(body === null ? null : JSON.stringify(body), { status, headers });
    });
    return calls;
  }

  it("sends the CSRF token on unsafe methods only, same-origin credentials", async () => {
    const calls = stubFetch(200, { ok: true });
    setCsrfToken("tok");
    await request("GET", "/me");
    await request("POST", "/sessions", { agent_id: "123456789" });
    expect(calls[0]!.init.credentials).toBe("same-origin");
    expect((calls[0]!.init.headers as Record<string, string>)["X-CSRF-Token"]).toBeUndefined();
    expect((calls[1]!.init.headers as Record<string, string>)["X-CSRF-Token"]).toBe("tok");
    expect(calls[1]!.url).toBe("/api/v1/sessions");
  });

  it("turns an error body into an ApiError in the page's language, with Retry-After", async () => {
    stubFetch(429, { error: { code: "rate_limited", message: { en: "Wait 30 s.", ja: "30 秒待ってください。" } } }, {
      "Retry-After": "30",
    });
    setLang("ja");
    const err = await request("POST", "/auth/console", {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).code).toBe("rate_limited");
    expect((err as ApiError).message).toBe("30 秒待ってください。");
    expect((err as ApiError).retryAfter).toBe(30);
  });

  it("reads a problem document's code and message before the deprecated error member", async () => {
    stubFetch(403, {
      type: "/api/v1/problems/contract_other_customer",
      status: 403,
      detail: "Other customer.",
      code: "contract_other_customer",
      message: { en: "Other customer.", ja: "別の顧客の契約です。" },
      error: { code: "old_code", message: { en: "old", ja: "old" } },
    });
    setLang("ja");
    const err = (await request("POST", "/sessions", {}).catch((e: unknown) => e)) as ApiError;
    expect(err.code).toBe("contract_other_customer");
    expect(err.message).toBe("別の顧客の契約です。");
  });

  it("asks for the contracts of one machine with agent_id", async () => {
    const calls = stubFetch(200, { contracts: [] });
    await contracts("123456789");
    await contracts();
    expect(calls.map((c) => c.url)).toEqual(["/api/v1/contracts?agent_id=123456789", "/api/v1/contracts"]);
  });

  it("keeps a warning only in the server's shape, shown in the page's language", () => {
    const n = asNotice({ code: "allowance_sessions", message: { en: "Past it.", ja: "上限超過。", x: 1 } });
    expect(n).toEqual({ code: "allowance_sessions", message: { en: "Past it.", ja: "上限超過。" } });
    setLang("ja");
    expect(noticeText(n!)).toBe("上限超過。");
    setLang("en");
    expect(noticeText(n!)).toBe("Past it.");
    expect(noticeText({ code: "c", message: { en: "only English" } })).toBe("only English");
    expect(asNotice(null)).toBeNull();
    expect(asNotice({ code: 3, message: {} })).toBeNull();
    expect(asNotice({ code: "c", message: "text" })).toBeNull();
  });

  it("an answer that is not the API's error shape still becomes an ApiError", async () => {
    stubFetch(502, null);
    const err = (await request("GET", "/me").catch((e: unknown) => e)) as ApiError;
    expect(err.code).toBe("http_502");
    expect(err.message).toBe("The server answered with an error (502).");
  });

  it("a network failure is an ApiError with status 0", async () => {
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("Failed to fetch");
    });
    const err = (await request("GET", "/me").catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(0);
    expect(err.code).toBe("network_error");
  });
});

