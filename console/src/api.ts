// Typed client of the server's /api/v1 for the console pages.
//
// Requests go to the page's own origin with the session cookie (credentials
// "same-origin"); every method other than GET/HEAD carries the X-CSRF-Token header the
// sign-in (or GET /auth/console) handed out. Error bodies are RFC 9457 problem documents
// with "code" and "message": {"en", "ja"} (older servers: {"error": {"code", "message"}})
// and become an ApiError whose message is in the page's language.

import { lang, t } from "./i18n";

const BASE = "/api/v1";

export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  /** Seconds from Retry-After (429), else null. */
  readonly retryAfter: number | null;
  constructor(status: number, code: string, message: string, retryAfter: number | null = null) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

export interface Technician {
  username: string;
  display_name: string;
  company: string;
  role: string;
}

export interface ConsoleLogin {
  technician: Technician;
  csrf_token: string;
  totp_enrolled?: boolean;
  recovery_codes_left?: number;
}

export interface Contract {
  code: string;
  customer_name: string;
  remote_support: boolean;
  valid_from: string; // YYYY-MM-DD
  valid_until: string | null;
}

/** A warning that did not stop the request (e.g. a contract past its monthly allowance). */
export interface Notice {
  code: string;
  message: { en?: string; ja?: string };
}

export interface SessionCreated {
  session_id: string;
  agent_id: string;
  contract: string;
  relay_url: string;
  relay_token: string;
  /** Set when the contract is past its monthly allowance (the session goes ahead). */
  warning?: Notice | null;
}

/** A notice in the page's language (English, then its code, if that one is missing). */
export function noticeText(n: Notice): string {
  return n.message[lang()] ?? n.message.en ?? n.code;
}

/** ``value`` if it is a notice as the server sends it, else null. */
export function asNotice(value: unknown): Notice | null {
  const v = value as { code?: unknown; message?: Record<string, unknown> } | null;
  if (!v || typeof v.code !== "string" || typeof v.message !== "object" || v.message === null) {
    return null;
  }
  const message: Notice["message"] = {};
  if (typeof v.message.en === "string") message.en = v.message.en;
  if (typeof v.message.ja === "string") message.ja = v.message.ja;
  return { code: v.code, message };
}

export interface SessionInfo {
  session_id: string;
  agent_id: string;
  contract_id: number;
  contract?: string;
  requested_at: string;
  paired_at: string | null;
  ended_at: string | null;
  end_reason: string | null;
  end_asserted_by: string | null;
  ended_by_technician_id: number | null;
  end_comment: string | null;
  bytes_to_agent: number;
  bytes_to_technician: number;
}

export interface TotpEnrolment {
  secret: string;
  otpauth_uri: string;
  qr_svg: string;
}

let csrfToken: string | null = null;

export function setCsrfToken(token: string | null): void {
  csrfToken = token;
}

type Method = "GET" | "POST" | "DELETE" | "PUT" | "PATCH";

/** One API call; the parsed JSON body (null for an empty one) or an ApiError. */
export async function request<T>(method: Method, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  let response: Response;
  try {
    response = await fetch(BASE + path, {
      method,
      headers,
      credentials: "same-origin",
      cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, "network_error", t("network_error"));
  }
  const text = await response.text();
  let data: unknown = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) throw toError(response, data);
  return data as T;
}

function toError(response: Response, data: unknown): ApiError {
  const retry = response.headers.get("Retry-After");
  const retryAfter = retry !== null && /^\d+$/.test(retry) ? Number(retry) : null;
  // An RFC 9457 problem document: its "code" and "message" members first, then the
  // deprecated "error" member that repeats them (docs/records.md#errors).
  type Coded = { code?: unknown; message?: unknown };
  const body = data as (Coded & { error?: Coded }) | null;
  const err = typeof body?.code === "string" ? body : body?.error;
  if (err && typeof err.code === "string") {
    const msg = err.message as Record<string, unknown> | undefined;
    const text = typeof msg?.[lang()] === "string" ? (msg[lang()] as string)
      : typeof msg?.en === "string" ? (msg.en as string) : err.code;
    return new ApiError(response.status, err.code, text, retryAfter);
  }
  return new ApiError(
    response.status,
    `http_${response.status}`,
    t("server_error", { status: response.status }),
    retryAfter,
  );
}

// Sign-in (cookie session)

export async function signIn(fields: {
  username: string;
  password: string;
  totp?: string;
  recovery_code?: string;
}): Promise<ConsoleLogin> {
  const res = await request<ConsoleLogin>("POST", "/auth/console", fields);
  setCsrfToken(res.csrf_token);
  return res;
}

/** The signed-in technician, or null when the cookie is missing or expired. */
export async function currentLogin(): Promise<ConsoleLogin | null> {
  try {
    const res = await request<ConsoleLogin>("GET", "/auth/console");
    setCsrfToken(res.csrf_token);
    return res;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

/** Signs out of the console. Clicked before the page learnt its CSRF token (its first
 * GET /auth/console still on the way), it asks for the token first; a console that is
 * already signed out (401) counts as signed out. Other errors are thrown: the technician
 * is still signed in and must be told so. */
export async function signOut(): Promise<void> {
  try {
    if (csrfToken === null && (await currentLogin()) === null) return;
    await request<null>("DELETE", "/auth/console");
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) throw e;
  }
  setCsrfToken(null);
}

// Account

export const startTotp = (password: string) =>
  request<TotpEnrolment>("POST", "/me/totp", { password });
export const confirmTotp = (code: string) =>
  request<{ recovery_codes: string[] }>("POST", "/me/totp/confirm", { code });
export const disableTotp = (password: string, code: string) =>
  request<null>("DELETE", "/me/totp", { password, code });
export const newRecoveryCodes = (password: string, code: string) =>
  request<{ recovery_codes: string[] }>("POST", "/me/recovery-codes", { password, code });
export const changePassword = (current: string, next: string) =>
  request<null>("POST", "/me/password", { current, new: next });

// Work

export const me = () => request<Technician>("GET", "/me");
/** Every contract; with an agent ID, only those a session with that machine may be billed
 * to today (its customer's, remote support, in force: the server's rule). */
export const contracts = (agentId?: string) =>
  request<{ contracts: Contract[] }>(
    "GET",
    agentId === undefined ? "/contracts" : `/contracts?agent_id=${encodeURIComponent(agentId)}`,
  ).then((r) => r.contracts);
export const recentSessions = (limit = 20) =>
  request<{ sessions: SessionInfo[] }>("GET", `/sessions?limit=${limit}`).then((r) => r.sessions);
export const createSession = (agentId: string, contract: string) =>
  request<SessionCreated>("POST", "/sessions", { agent_id: agentId, contract });
export const getSession = (id: string) =>
  request<SessionInfo>("GET", `/sessions/${encodeURIComponent(id)}`);
export const endSession = (id: string, reason: string, comment?: string) =>
  request<null>("POST", `/sessions/${encodeURIComponent(id)}/end`, {
    reason,
    ...(comment ? { comment } : {}),
  });

/** Contracts a session can be billed to today (remote support, in force, local date). */
export function validToday(list: Contract[], today: Date = new Date()): Contract[] {
  const y = today.getFullYear();
  const m = String(today.getMonth() + 1).padStart(2, "0");
  const d = String(today.getDate()).padStart(2, "0");
  const iso = `${y}-${m}-${d}`;
  return list.filter(
    (c) => c.remote_support && c.valid_from <= iso && (c.valid_until === null || iso <= c.valid_until),
  );
}
