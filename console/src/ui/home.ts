// The home page: the connect form (ID, one-time password, contract valid today), the
// recent sessions, and the account menu (two-step sign-in, password, sign-out).

import "./console.css";
import {
  ApiError,
  type ConsoleLogin,
  type Contract,
  type SessionInfo,
  createSession,
  contracts,
  currentLogin,
  recentSessions,
  signOut,
  validToday,
} from "../api";
import { bytesText, durationText, lang, onLangChange, reasonText, t } from "../i18n";
import { normalizePassword } from "../protocol/password";
import { setupAccount } from "./account";
import { PAGES, byId, el, formatAgentId, setupPage, showMessage, storeTicket, toLogin } from "./common";

setupPage("home_title");

const form = byId<HTMLFormElement>("connect-form");
const agentId = byId<HTMLInputElement>("agent-id");
const otp = byId<HTMLInputElement>("otp");
const contractSelect = byId<HTMLSelectElement>("contract");
const message = byId("connect-message");
const submit = byId<HTMLButtonElement>("connect-submit");

let login: ConsoleLogin | null = null;
/** Contracts valid today, for any machine (shown until a whole ID is typed). */
let allValid: Contract[] = [];
/** What the list shows: allValid, or the contracts usable for the machine listedFor. */
let usable: Contract[] = [];
let listedFor: string | null = null;
/** The server's refusal of the machine's list, in the page's language, or null. */
let listError: string | null = null;
/** Whether the message box holds the list's message (hidden again once it has some). */
let listMessage = false;
/** Counts the list requests: an answer to an older one is dropped. */
let asked = 0;
let sessions: SessionInfo[] = [];

/** Turn an API failure into the page's words; 401 sends the technician to sign in. */
export function connectErrorText(e: unknown): string {
  if (!(e instanceof ApiError)) return t("network_error");
  switch (e.code) {
    case "agent_offline":
      return t("err_agent_offline");
    case "terms_not_accepted":
      return t("err_terms_not_accepted");
    case "contract_not_in_force":
    case "contract_excludes_remote_support":
    case "contract_unknown":
    case "contract_required":
      return t("err_contract_invalid");
  }
  return e.message;
}

function renderContracts(): void {
  const chosen = contractSelect.value;
  contractSelect.replaceChildren(
    ...usable.map((c) =>
      el("option", { value: c.code }, t("contract_option", { code: c.code, customer: c.customer_name })),
    ),
  );
  if (chosen) contractSelect.value = chosen;
  contractSelect.disabled = usable.length === 0;
  if (usable.length === 0) {
    if (listError !== null) showMessage(message, listError);
    else if (listedFor !== null)
      showMessage(message, t("contract_none_for_agent", { id: formatAgentId(listedFor) }), "info");
    else showMessage(message, t("contract_none"), "info");
    listMessage = true;
  } else if (listMessage) {
    showMessage(message, null);
    listMessage = false;
  }
}

/** Once a whole ID is typed, list only the contracts usable for that machine (valid
 * today); before that, every contract valid today. */
async function refreshContracts(): Promise<void> {
  const digits = agentId.value.replace(/\D/g, "");
  const target = digits.length === 9 ? digits : null;
  if (target === listedFor) return;
  const ask = ++asked;
  if (target === null) {
    listedFor = null;
    listError = null;
    usable = allValid;
    renderContracts();
    return;
  }
  try {
    const list = validToday(await contracts(target));
    if (ask !== asked) return;
    usable = list;
    listError = null;
  } catch (e) {
    if (ask !== asked) return;
    if (e instanceof ApiError && e.status === 401) {
      toLogin();
      return;
    }
    usable = [];
    listError = connectErrorText(e);
  }
  listedFor = target;
  renderContracts();
}

function renderSessions(): void {
  const table = byId<HTMLTableElement>("recent");
  const body = table.tBodies[0];
  if (!body) return;
  byId("recent-none").hidden = sessions.length > 0;
  table.hidden = sessions.length === 0;
  const fmt = new Intl.DateTimeFormat(lang() === "ja" ? "ja-JP" : "en-GB", {
    dateStyle: "short",
    timeStyle: "short",
  });
  body.replaceChildren(
    ...sessions.map((s) => {
      const started = new Date(s.paired_at ?? s.requested_at);
      const end = s.ended_at ? new Date(s.ended_at) : null;
      const duration = s.paired_at
        ? durationText(((end ?? new Date()).getTime() - new Date(s.paired_at).getTime()) / 1000)
        : "—";
      const how = s.end_reason
        ? reasonText(s.end_reason)
        : s.ended_at
          ? "—"
          : s.paired_at
            ? t("session_running")
            : t("session_not_paired");
      const endCell = el("td", {}, how);
      if (s.end_comment) endCell.append(el("div", { class: "hint" }, s.end_comment));
      return el(
        "tr",
        {},
        el("td", {}, fmt.format(started)),
        el("td", { class: "mono" }, formatAgentId(s.agent_id)),
        el("td", {}, s.contract ?? ""),
        el("td", {}, duration),
        el("td", {}, bytesText(s.bytes_to_agent + s.bytes_to_technician)),
        endCell,
      );
    }),
  );
}

agentId.addEventListener("input", () => {
  const before = agentId.value;
  const caret = agentId.selectionStart ?? before.length;
  const digitsBefore = before.slice(0, caret).replace(/\D/g, "").length;
  agentId.value = formatAgentId(before);
  // keep the caret after the same digit
  let pos = 0;
  let seen = 0;
  while (pos < agentId.value.length && seen < digitsBefore) {
    if (/\d/.test(agentId.value[pos] ?? "")) seen += 1;
    pos += 1;
  }
  agentId.setSelectionRange(pos, pos);
  if (login) void refreshContracts();
});

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const id = agentId.value.replace(/\D/g, "");
  if (id.length !== 9) {
    showMessage(message, t("err_agent_id"));
    agentId.focus();
    return;
  }
  const password = otp.value.trim();
  if (!password) {
    showMessage(message, t("err_otp_empty"));
    otp.focus();
    return;
  }
  try {
    normalizePassword(password); // a typo is caught before the customer's computer is asked
  } catch {
    showMessage(message, t("err_malformed_password"));
    otp.focus();
    return;
  }
  submit.disabled = true;
  await refreshContracts(); // the list of this machine, if it is not shown yet
  if (!contractSelect.value) {
    renderContracts();
    submit.disabled = false;
    return;
  }
  showMessage(message, t("connecting_request"), "info");
  try {
    const created = await createSession(id, contractSelect.value);
    storeTicket({ ...created, password });
    otp.value = "";
    location.assign(PAGES.session);
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) {
      toLogin();
      return;
    }
    showMessage(message, connectErrorText(e));
    submit.disabled = false;
  }
});

byId("sign-out").addEventListener("click", async () => {
  try {
    await signOut();
  } catch (e) {
    // Still signed in: going to the sign-in page would bounce straight back here.
    showMessage(message, t("sign_out_failed", { reason: e instanceof ApiError ? e.message : t("network_error") }));
    return;
  }
  location.replace(PAGES.login);
});

onLangChange(() => {
  renderContracts();
  renderSessions();
  if (login) byId("signed-in-as").textContent = t("signed_in_as", { name: login.technician.display_name });
});

async function start(): Promise<void> {
  try {
    login = await currentLogin();
  } catch (e) {
    showMessage(message, e instanceof ApiError ? e.message : t("network_error"));
    return;
  }
  if (!login) {
    toLogin();
    return;
  }
  byId("signed-in-as").textContent = t("signed_in_as", { name: login.technician.display_name });
  byId("account-name").textContent = login.technician.display_name || login.technician.username;
  setupAccount(login);
  try {
    allValid = validToday(await contracts());
    usable = allValid;
    renderContracts();
    await refreshContracts();
  } catch (e) {
    showMessage(message, connectErrorText(e));
  }
  try {
    sessions = await recentSessions(20);
    renderSessions();
  } catch (e) {
    showMessage(byId("recent-message"), e instanceof ApiError ? e.message : t("network_error"));
  }
  // Only onto an idle page: a technician already typing (the page was quicker to show than
  // its lists to load) keeps the field they are in, and their keys stay there.
  if (!document.activeElement || document.activeElement === document.body) agentId.focus();
}

void start();
