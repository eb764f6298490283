// The console's own message catalog, Japanese and English.
//
// The language comes from navigator.languages (the first of "ja"/"en" found; English
// otherwise); the switch in every page's header stores the choice in localStorage
// ("enkaku.lang") and it wins from then on. Elements carrying data-i18n="key" get their
// text from the catalog, data-i18n-placeholder / data-i18n-title / data-i18n-aria their
// attributes, so the HTML pages hold no language of their own beyond a fallback.

export type Lang = "ja" | "en";

const STORAGE_KEY = "enkaku.lang";

type Entry = readonly [en: string, ja: string];

const CATALOG = {
  // Common
  app_name: ["enkaku console", "enkaku コンソール"],
  language: ["Language", "言語"],
  lang_switch: ["日本語", "English"],
  close: ["Close", "閉じる"],
  cancel: ["Cancel", "キャンセル"],
  loading: ["Loading…", "読み込み中…"],
  network_error: [
    "The server cannot be reached. Check the network and try again.",
    "サーバーに接続できません。ネットワークを確認して、もう一度お試しください。",
  ],
  server_error: ["The server answered with an error ({status}).", "サーバーがエラーを返しました ({status})。"],
  signed_out_expired: [
    "Your sign-in has expired. Please sign in again.",
    "サインインの有効期限が切れました。もう一度サインインしてください。",
  ],

  // Sign-in
  signin_title: ["Sign in", "サインイン"],
  signin_lead: [
    "Sign in with your technician account.",
    "技術者アカウントでサインインしてください。",
  ],
  username: ["User name", "ユーザー名"],
  password: ["Password", "パスワード"],
  totp_code: ["Authentication code", "認証コード"],
  totp_hint: [
    "The 6-digit code from your authenticator app.",
    "認証アプリに表示されている 6 桁のコードです。",
  ],
  use_recovery: ["Use a recovery code instead", "代わりにリカバリーコードを使う"],
  use_totp: ["Use the authenticator app code", "認証アプリのコードを使う"],
  recovery_code: ["Recovery code", "リカバリーコード"],
  recovery_hint: [
    "Each recovery code works once.",
    "リカバリーコードはそれぞれ 1 回だけ使えます。",
  ],
  signin_button: ["Sign in", "サインイン"],
  signing_in: ["Signing in…", "サインインしています…"],
  err_login_failed: [
    "Wrong user name or password.",
    "ユーザー名またはパスワードが違います。",
  ],
  err_totp_required: [
    "Enter the code from your authenticator app.",
    "認証アプリのコードを入力してください。",
  ],
  err_totp_wrong: [
    "That authentication code is not right. Check the time on your phone and try the current code.",
    "認証コードが違います。スマートフォンの時刻を確認し、現在のコードを入力してください。",
  ],
  err_totp_reused: [
    "That code has just been used. Wait for the next code and enter it.",
    "このコードは使用済みです。次のコードが表示されるまで待って入力してください。",
  ],
  err_recovery_wrong: [
    "That recovery code is not valid or has been used.",
    "このリカバリーコードは無効か、すでに使用されています。",
  ],
  err_locked: [
    "Too many failed attempts. Try again in {wait}.",
    "失敗が続いたため、一時的にサインインできません。{wait}後にもう一度お試しください。",
  ],
  wait_seconds: ["{n} seconds", "{n} 秒"],
  wait_minutes: ["{n} minutes", "{n} 分"],
  field_required: ["Fill in this field.", "この項目を入力してください。"],

  // Home
  home_title: ["Connect", "接続"],
  signed_in_as: ["Signed in as {name}", "{name} としてサインイン中"],
  account_menu: ["Account", "アカウント"],
  sign_out: ["Sign out", "サインアウト"],
  sign_out_failed: [
    "Could not sign out; you are still signed in. {reason}",
    "サインアウトできませんでした。サインインしたままです。{reason}",
  ],
  connect_title: ["Connect to a customer", "お客様のコンピューターに接続"],
  connect_lead: [
    "Enter the ID and one-time password the customer reads to you from the enkaku window.",
    "お客様が enkaku の画面で読み上げる ID とワンタイムパスワードを入力してください。",
  ],
  // The field's label says how many digits; its placeholder is only an example, short
  // enough for the field in either language.
  agent_id: ["ID (9 digits)", "ID (9 桁の数字)"],
  agent_id_hint: ["e.g. 123 456 789", "例: 123 456 789"],
  otp: ["One-time password", "ワンタイムパスワード"],
  contract: ["Contract", "契約"],
  contract_none: [
    "No contract is valid today: a session cannot be billed.",
    "本日有効な契約がありません。セッションを請求先に割り当てられません。",
  ],
  contract_none_for_agent: [
    "No contract can be billed for machine {id}: its customer has no contract that includes remote support and is valid today. Ask an admin to check the customer's contracts.",
    "マシン {id} に請求できる契約がありません。このマシンの顧客には、本日有効でリモートサポートを含む契約がありません。管理者に顧客の契約を確認してもらってください。",
  ],
  contract_option: ["{code} — {customer}", "{code} — {customer}"],
  connect_button: ["Connect", "接続"],
  connecting_request: ["Asking the customer's computer…", "お客様のコンピューターに要求しています…"],
  err_agent_id: ["The ID has 9 digits.", "ID は 9 桁の数字です。"],
  err_otp_empty: ["Enter the one-time password.", "ワンタイムパスワードを入力してください。"],
  recent_title: ["Recent sessions", "最近のセッション"],
  recent_none: ["No sessions yet.", "セッションはまだありません。"],
  col_started: ["Started", "開始"],
  col_id: ["ID", "ID"],
  col_contract: ["Contract", "契約"],
  col_duration: ["Duration", "時間"],
  col_data: ["Data", "データ量"],
  col_end: ["How it ended", "終了理由"],
  session_running: ["in progress", "接続中"],
  session_not_paired: ["not connected", "未接続"],

  // Account
  account_title: ["Account", "アカウント"],
  totp_section: ["Two-step sign-in", "2 段階認証"],
  totp_on: ["Two-step sign-in is on.", "2 段階認証は有効です。"],
  totp_off: [
    "Two-step sign-in is off. Turn it on to protect your account with an authenticator app.",
    "2 段階認証は無効です。認証アプリでアカウントを保護するには有効にしてください。",
  ],
  totp_enable: ["Turn on two-step sign-in", "2 段階認証を有効にする"],
  totp_disable: ["Turn off two-step sign-in", "2 段階認証を無効にする"],
  totp_scan: [
    "Scan this code with your authenticator app, or enter the key by hand, then enter the code it shows.",
    "認証アプリでこのコードを読み取るか、キーを手入力し、表示されたコードを入力してください。",
  ],
  totp_secret: ["Key", "キー"],
  totp_confirm: ["Confirm", "確認"],
  totp_enabled_done: ["Two-step sign-in is now on.", "2 段階認証を有効にしました。"],
  totp_disabled_done: ["Two-step sign-in is now off.", "2 段階認証を無効にしました。"],
  totp_code_or_recovery: ["Authentication code or a recovery code", "認証コードまたはリカバリーコード"],
  recovery_renew: ["New recovery codes", "リカバリーコードを再発行"],
  recovery_left: [
    "Recovery codes left: {n} of 10.",
    "残りのリカバリーコード: 10 個中 {n} 個",
  ],
  recovery_title: ["Recovery codes", "リカバリーコード"],
  recovery_once: [
    "Keep these codes somewhere safe. Each works once if you lose your phone. They are shown only now.",
    "これらのコードを安全な場所に保管してください。スマートフォンをなくしたとき、各コードを 1 回だけ使えます。表示されるのは今回だけです。",
  ],
  recovery_saved: ["I have saved them", "保存しました"],
  current_password: ["Current password", "現在のパスワード"],
  new_password: ["New password", "新しいパスワード"],
  new_password_again: ["New password again", "新しいパスワード (確認)"],
  password_section: ["Password", "パスワード"],
  password_change: ["Change password", "パスワードを変更"],
  password_changed: ["Your password has been changed.", "パスワードを変更しました。"],
  err_password_mismatch: ["The two new passwords differ.", "新しいパスワードが一致しません。"],

  // Session page
  session_title: ["Session", "セッション"],
  state_connecting: ["Connecting…", "接続しています…"],
  state_handshake: ["Checking the password…", "パスワードを確認しています…"],
  state_waiting_consent: [
    "Waiting for the customer to allow the session…",
    "お客様の許可を待っています…",
  ],
  state_connected: ["Connected", "接続済み"],
  state_paused: ["The customer paused remote control", "お客様がリモート操作を一時停止しました"],
  state_ended: ["Session ended", "セッション終了"],
  latency: ["Latency", "遅延"],
  latency_value: ["{ms} ms", "{ms} ミリ秒"],
  data_used: ["Data", "データ量"],
  data_value: ["↑ {up} ↓ {down}", "↑ {up} ↓ {down}"],
  end_session: ["End session", "セッション終了"],
  end_title: ["End the session", "セッションを終了"],
  end_reason: ["Reason", "理由"],
  end_reason_normal: ["Support finished", "サポート完了"],
  end_comment: ["Comment", "コメント"],
  end_comment_hint: [
    "What you found. Required when support is stopped for a reason of the terms.",
    "確認した内容。規約上の理由でサポートを中止する場合は必須です。",
  ],
  end_comment_required: [
    "A comment is required for this reason.",
    "この理由にはコメントが必要です。",
  ],
  end_confirm: ["End session", "終了する"],
  ended_reason: ["Session ended: {reason}.", "セッションが終了しました: {reason}。"],
  screen_unavailable: [
    "The customer's screen is not available (no screen to share, or it stopped). The tools and chat still work.",
    "お客様の画面を表示できません (共有できる画面がないか、共有が止まりました)。ツールとチャットは引き続き使えます。",
  ],
  screen_no_display: [
    "The customer's computer has no screen to share (enkaku runs there without a display, as on a server). The tools and chat still work.",
    "お客様のコンピューターには共有できる画面がありません (enkaku はサーバーのようにディスプレイなしで動作しています)。ツールとチャットは引き続き使えます。",
  ],
  screen_format: [
    "The customer's screen uses a colour format enkaku cannot show. The enkaku log on the customer's computer says how to set the display to 24-bit colour. The tools and chat still work.",
    "お客様の画面は enkaku で表示できない色形式です。24 ビットカラーへの設定方法は、お客様のコンピューターの enkaku のログに出ています。ツールとチャットは引き続き使えます。",
  ],
  screen_failed: [
    "The customer's screen could not be shared, or stopped being shared: the desktop session ended or the display went away (the enkaku log on the customer's computer says why). The tools and chat still work; start a new session once the customer is back at the desktop.",
    "お客様の画面を共有できないか、共有が止まりました。デスクトップのセッションが終了したか、ディスプレイがなくなりました (理由はお客様のコンピューターの enkaku のログに出ています)。ツールとチャットは引き続き使えます。お客様がデスクトップに戻ったら、新しいセッションを開始してください。",
  ],
  back_home: ["Back to the start page", "ホームに戻る"],
  view_menu: ["View", "表示"],
  scale_fit: ["Fit to window", "ウィンドウに合わせる"],
  scale_actual: ["Actual size (1:1)", "実寸 (1:1)"],
  full_screen: ["Full screen", "全画面"],
  view_only: ["View only", "表示のみ"],
  keys_menu: ["Keys", "キー"],
  key_cad: ["Ctrl+Alt+Del", "Ctrl+Alt+Del"],
  key_win: ["Windows key", "Windows キー"],
  key_alt_tab: ["Alt+Tab", "Alt+Tab"],
  key_alt_f4: ["Alt+F4", "Alt+F4"],
  key_ctrl_esc: ["Ctrl+Esc", "Ctrl+Esc"],
  key_print: ["Print Screen", "Print Screen"],
  key_zenkaku: ["Zenkaku/Hankaku", "半角/全角"],
  quality: ["Quality", "画質"],
  quality_lossless: ["Lossless (exact colours)", "ロスレス (正確な色)"],
  quality_high: ["High quality", "高画質"],
  quality_balanced: ["Balanced", "標準"],
  quality_fast: ["Fast (slow line)", "高速 (低速回線向け)"],
  monitor: ["Monitor", "モニター"],
  monitor_all: ["Whole desktop", "デスクトップ全体"],
  monitor_n: ["Monitor {n} ({w}×{h})", "モニター {n} ({w}×{h})"],
  monitor_gone: [
    "Monitor {n} is no longer connected to the customer's computer: the whole desktop is shown. View › Monitor lists the monitors it has now.",
    "お客様のコンピューターからモニター {n} がなくなったため、デスクトップ全体を表示しています。今あるモニターは「表示」›「モニター」から選べます。",
  ],
  monitor_single: [
    "The customer's computer now has a single monitor: it is shown whole.",
    "お客様のコンピューターのモニターが 1 台になったため、その全体を表示しています。",
  ],
  monitor_refused: [
    "Monitor {n} cannot be shown: the customer's monitors have changed. Choose again from the updated list in View › Monitor.",
    "モニター {n} は表示できません (お客様のモニター構成が変わりました)。「表示」›「モニター」の最新の一覧から選び直してください。",
  ],
  consent_title: ["Customer's permission", "お客様の許可"],
  consent_granted: ["allowed", "許可済み"],
  consent_not: ["not asked", "未確認"],
  consent_asking: ["asking…", "確認中…"],
  consent_denied: ["refused", "拒否"],
  action_screen: ["Screen", "画面"],
  action_control: ["Control", "操作"],
  action_system_info: ["System information", "システム情報"],
  action_browse: ["Browse files", "ファイル参照"],
  action_clipboard: ["Clipboard", "クリップボード"],
  action_terminal: ["Terminal", "ターミナル"],
  action_screenshot: ["Screenshot", "スクリーンショット"],
  action_file_to_customer: ["Send a file", "ファイル送信"],
  action_file_from_customer: ["Take a file", "ファイル受信"],
  tools: ["Tools", "ツール"],
  panel_clipboard: ["Clipboard", "クリップボード"],
  clipboard_hint: [
    "Text copied on the customer's computer appears here; text you put here and send goes to its clipboard.",
    "お客様のコンピューターでコピーした文字がここに表示されます。ここに入力して送信すると、お客様のクリップボードに入ります。",
  ],
  clipboard_send: ["Send to the customer's clipboard", "お客様のクリップボードに送る"],
  panel_type: ["Type text", "文字を入力"],
  type_hint: [
    "Types the text key by key, for login screens and password fields where no clipboard reaches.",
    "クリップボードが使えないログイン画面やパスワード欄に、1 文字ずつキー入力します。",
  ],
  type_send: ["Type it", "入力する"],
  type_done: ["Typed.", "入力しました。"],
  panel_chat: ["Chat", "チャット"],
  chat_placeholder: ["Message to the customer", "お客様へのメッセージ"],
  chat_send: ["Send", "送信"],
  chat_me: ["You", "あなた"],
  chat_customer: ["Customer", "お客様"],
  panel_sysinfo: ["System information", "システム情報"],
  sysinfo_get: ["Get system information", "システム情報を取得"],
  export_json: ["Save as JSON", "JSON で保存"],
  export_text: ["Save as text", "テキストで保存"],
  panel_files: ["Files", "ファイル"],
  files_send: ["Send to the customer", "お客様に送る"],
  files_drop: [
    "Drop files here to send them to the customer's Downloads folder.",
    "ここにファイルをドロップすると、お客様のダウンロードフォルダーに送ります。",
  ],
  files_overwrite: [
    "Replace a file of the same name (the customer is told)",
    "同じ名前のファイルを置き換える (お客様に表示されます)",
  ],
  files_choose: ["Choose files…", "ファイルを選択…"],
  files_hashing: ["Reading the file…", "ファイルを読み込んでいます…"],
  files_sent: ["Sent as {name} ({size}).", "{name} として送信しました ({size})。"],
  files_received: ["Received {name} ({size}).", "{name} を受信しました ({size})。"],
  files_take: ["Take from the customer", "お客様から受け取る"],
  files_take_one: ["Take", "受け取る"],
  browse: ["Browse", "参照"],
  browse_up: ["Up", "上へ"],
  browse_home: ["Home folder", "ホームフォルダー"],
  browse_truncated: ["More entries are not shown.", "これ以上の項目は表示されていません。"],
  speed: ["{speed}/s", "{speed}/秒"],
  time_left: ["{time} left", "残り {time}"],
  screenshot_take: ["Take a screenshot", "スクリーンショットを撮る"],
  screenshot_save: ["Save the picture", "画像を保存"],
  screenshot_size: ["{width} × {height} pixels", "{width} × {height} ピクセル"],
  terminal_open: ["Open a terminal", "ターミナルを開く"],
  panel_screenshot: ["Screenshot", "スクリーンショット"],
  panel_terminal: ["Terminal", "ターミナル"],
  asking_customer: ["Asking the customer…", "お客様に確認しています…"],
  err_denied_action: [
    "The customer did not allow this: {reason}.",
    "お客様が許可しませんでした: {reason}。",
  ],
  answer_denied: ["they said no", "拒否されました"],
  answer_timeout: ["no answer in time", "時間内に応答がありませんでした"],
  answer_policy: ["the customer's settings refuse it", "お客様の設定で禁止されています"],
  answer_unavailable: ["the session is ending", "セッションが終了しようとしています"],
  answer_invalid: ["the request was incomplete", "要求が不完全でした"],
  answer_busy: ["too many questions are open", "確認待ちの質問が多すぎます"],

  // Session errors in words
  err_wrong_password: [
    "Wrong one-time password. Ask the customer to read it again.",
    "ワンタイムパスワードが違います。お客様にもう一度読み上げてもらってください。",
  ],
  err_wrong_password_left: [
    "Wrong one-time password: {n} attempts left before the customer's computer draws a new one.",
    "ワンタイムパスワードが違います。あと {n} 回間違えると、お客様のコンピューターで新しいパスワードに変わります。",
  ],
  err_malformed_password: [
    "That is not a one-time password: it has 8 letters and digits, like k3m9-x2qa. Nothing was tried.",
    "ワンタイムパスワードの形式ではありません (k3m9-x2qa のような 8 文字の英数字です)。接続は試行していません。",
  ],
  err_password_replaced: [
    "Too many wrong passwords: the customer's computer now shows a new one. Ask the customer for it.",
    "パスワードの誤りが続いたため、お客様のコンピューターに新しいパスワードが表示されています。お客様に確認してください。",
  ],
  err_agent_offline: [
    "The computer with this ID is not online. Ask the customer to start enkaku and read the ID again.",
    "この ID のコンピューターはオンラインではありません。お客様に enkaku を起動して ID をもう一度読み上げてもらってください。",
  ],
  err_agent_gone: [
    "The customer's computer went offline: the session has ended. Ask the customer to check the network and read the new password.",
    "お客様のコンピューターがオフラインになり、セッションは終了しました。お客様にネットワークを確認してもらい、新しいパスワードを読み上げてもらってください。",
  ],
  err_consent_denied: [
    "The customer did not allow the session.",
    "お客様がセッションを許可しませんでした。",
  ],
  err_contract_invalid: [
    "This contract is not valid for remote support today.",
    "この契約は本日リモートサポートに使えません。",
  ],
  err_terms_not_accepted: [
    "The customer has not accepted the current terms of service. Ask them to accept the terms in enkaku first.",
    "お客様が現在の利用規約に同意していません。先に enkaku で規約に同意してもらってください。",
  ],
  err_connection_lost: [
    "The connection was lost.",
    "接続が失われました。",
  ],
  err_busy: [
    "The customer's computer is already in another session.",
    "お客様のコンピューターは別のセッション中です。",
  ],
  err_no_session: [
    "No session to show. Start one from the start page.",
    "表示するセッションがありません。ホームから接続してください。",
  ],
  err_handshake: ["The encrypted connection could not be set up.", "暗号化接続を確立できませんでした。"],
  err_end_failed: ["The session could not be ended: {message}", "セッションを終了できませんでした: {message}"],

  // End reasons (protocol END_REASONS, as src/enkaku/i18n.py REASONS reads them)
  reason_technician_ended: ["the technician ended it", "技術者が終了しました"],
  reason_customer_ended: ["the customer ended it", "お客様が終了しました"],
  reason_consent_denied: ["the customer did not allow it", "お客様が許可しませんでした"],
  reason_wrong_password: ["wrong password", "パスワードが違います"],
  reason_handshake_failed: ["the encrypted handshake failed", "暗号化の確立に失敗しました"],
  reason_protocol_error: ["invalid data was received", "不正なデータを受信しました"],
  reason_agent_disconnected: [
    "the customer's computer went offline",
    "お客様のコンピューターとの接続が切れました",
  ],
  reason_technician_disconnected: ["the technician went offline", "技術者との接続が切れました"],
  reason_timeout: ["the other side did not answer in time", "相手が時間内に応答しませんでした"],
  reason_server_restart: ["the server restarted", "サーバーが再起動しました"],
  reason_server_shutdown: ["the server shut down", "サーバーが停止しました"],
  reason_device_malfunction: [
    "the device is malfunctioning or modified",
    "機器の故障または改造が見つかりました",
  ],
  reason_malware_found: ["malware was found", "マルウェアが見つかりました"],
  reason_credentials_refused: [
    "required credentials were refused",
    "必要な認証情報の提供が拒否されました",
  ],
  reason_illegal_request: ["an illegal request was made", "違法な依頼がありました"],
  reason_busy: ["the agent is already in a session", "エージェントは別のセッション中です"],
  reason_connection_lost: ["the connection was lost", "接続が失われました"],
} satisfies Record<string, Entry>;

export type Key = keyof typeof CATALOG;

function fromBrowser(): Lang {
  const langs = typeof navigator !== "undefined" ? navigator.languages ?? [navigator.language] : [];
  for (const l of langs) {
    const code = (l ?? "").toLowerCase();
    if (code.startsWith("ja")) return "ja";
    if (code.startsWith("en")) return "en";
  }
  return "en";
}

function stored(): Lang | null {
  try {
    const v = localStorage.getItem(STORAGE_KEY);
    return v === "ja" || v === "en" ? v : null;
  } catch {
    return null; // storage disabled: follow the browser
  }
}

let current: Lang = stored() ?? fromBrowser();

export function lang(): Lang {
  return current;
}

/** Choose the language, remember it and re-translate the page. */
export function setLang(next: Lang): void {
  current = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    // storage disabled: the choice lasts for this page only
  }
  if (typeof document !== "undefined") applyI18n(document);
  listeners.forEach((fn) => fn(next));
}

const listeners = new Set<(l: Lang) => void>();

/** Called after each language switch (for text built in code). */
export function onLangChange(fn: (l: Lang) => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** The message ``key`` in the page's language, with {name} placeholders filled in. */
export function t(key: Key, params: Record<string, string | number> = {}): string {
  const entry: Entry = CATALOG[key];
  const text = current === "ja" ? entry[1] : entry[0];
  return text.replace(/\{(\w+)\}/g, (m, name: string) =>
    name in params ? String(params[name]) : m,
  );
}

/** Every catalog entry as [key, English, Japanese] (for the catalog's own tests). */
export function entries(): [Key, string, string][] {
  return (Object.keys(CATALOG) as Key[]).map((k) => [k, CATALOG[k][0], CATALOG[k][1]]);
}

export function hasKey(key: string): key is Key {
  return Object.prototype.hasOwnProperty.call(CATALOG, key);
}

/** A session end reason in words; an unknown code is shown as itself. */
export function reasonText(reason: string): string {
  const key = `reason_${reason}`;
  return hasKey(key) ? t(key) : reason;
}

/** A wait in seconds in words ("45 seconds", "3 分"). */
export function waitText(seconds: number): string {
  const s = Math.max(1, Math.ceil(seconds));
  return s < 120 ? t("wait_seconds", { n: s }) : t("wait_minutes", { n: Math.ceil(s / 60) });
}

/** A byte count for people: 1.2 MB, 340 KB (decimal units). */
export function bytesText(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n;
  let i = -1;
  do {
    v /= 1000;
    i += 1;
  } while (v >= 1000 && i < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}

/** A duration in seconds as h:mm:ss or m:ss. */
export function durationText(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${sec}` : `${m}:${sec}`;
}

/** Translate every element under ``root`` that names a catalog key. */
export function applyI18n(root: ParentNode): void {
  if (typeof document !== "undefined") {
    document.documentElement.lang = current;
  }
  const attrs: [string, string][] = [
    ["data-i18n-placeholder", "placeholder"],
    ["data-i18n-title", "title"],
    ["data-i18n-aria", "aria-label"],
  ];
  root.querySelectorAll<HTMLElement>("[data-i18n]").forEach((el) => {
    const key = el.dataset.i18n ?? "";
    if (hasKey(key)) el.textContent = t(key);
  });
  for (const [data, attr] of attrs) {
    root.querySelectorAll<HTMLElement>(`[${data}]`).forEach((el) => {
      const key = el.getAttribute(data) ?? "";
      if (hasKey(key)) el.setAttribute(attr, t(key));
    });
  }
}
