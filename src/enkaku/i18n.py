"""User-facing strings in English and Japanese.

The language comes from ENKAKU_LANG, then LC_ALL / LC_MESSAGES / LANG ("ja*" → Japanese);
English otherwise. Every user-facing message is a key of CATALOG with both texts.
"""

from __future__ import annotations

import os
import unicodedata

CATALOG: dict[str, tuple[str, str]] = {
    # server / API errors
    "unauthorized": (
        "Log in first: run `enkaku login`.",
        "先にログインしてください: `enkaku login` を実行してください。",
    ),
    "login_failed": ("Wrong user name or password.", "ユーザー名またはパスワードが違います。"),
    "forbidden": (
        "Your account may not do this.",
        "このアカウントにはこの操作の権限がありません。",
    ),
    "bad_request": ("The request is invalid: {detail}", "リクエストが不正です: {detail}"),
    "not_found": ("Not found.", "見つかりません。"),
    "csrf": (
        "Missing or wrong CSRF token; reload the page.",
        "CSRF トークンがありません。ページを再読み込みしてください。",
    ),
    "agent_offline": (
        "Agent {agent_id} is not online. Ask the customer to start enkaku and read you the ID again.",
        "エージェント {agent_id} はオンラインではありません。お客様に enkaku を起動して ID をもう一度読み上げてもらってください。",
    ),
    "agent_busy": (
        "Agent {agent_id} is already in a session.",
        "エージェント {agent_id} は別のセッション中です。",
    ),
    "contract_unknown": (
        "Unknown contract {contract!r}. Known contracts: {known}.",
        "契約 {contract!r} は存在しません。登録済みの契約: {known}",
    ),
    "contract_required": (
        "Choose the contract to bill with --contract. Known contracts: {known}.",
        "--contract で請求先の契約を指定してください。登録済みの契約: {known}",
    ),
    "contract_excludes_remote_support": (
        "Contract {contract} does not include remote support.",
        "契約 {contract} にはリモートサポートが含まれていません。",
    ),
    "contract_not_in_force": (
        "Contract {contract} is not in force today.",
        "契約 {contract} は本日有効ではありません。",
    ),
    "rate_limited": (
        "Too many failed attempts; wait {seconds} s before trying again.",
        "失敗が多すぎます。{seconds} 秒待ってから再試行してください。",
    ),
    "session_not_found": ("No such session.", "そのセッションは存在しません。"),
    "login_in_progress": (
        "Another login for this account or from this address is in progress; try again in a moment.",
        "このアカウントまたはこのアドレスからの別のログインが処理中です。少し待ってから再試行してください。",
    ),
    "too_many_pending": (
        "You already have {count} session requests waiting to be joined; join or end them first.",
        "参加待ちのセッション要求がすでに {count} 件あります。先に参加するか終了してください。",
    ),
    "end_reason_not_yours": (
        "A technician cannot record the end reason {reason}; use one of: {allowed}.",
        "技術者は終了理由 {reason} を記録できません。次のいずれかを使ってください: {allowed}",
    ),
    "end_reason_own_session": (
        "Only the technician of this session can record {reason}.",
        "{reason} を記録できるのは、このセッションの技術者だけです。",
    ),
    "end_comment_required": (
        "The end reason {reason} needs a comment saying what you found.",
        "終了理由 {reason} には、何が見つかったかを説明するコメントが必要です。",
    ),
    "end_reason_needs_consent": (
        "The end reason {reason} can only be recorded in a session the customer allowed.",
        "終了理由 {reason} は、お客様が許可したセッションでのみ記録できます。",
    ),
    "session_already_ended": (
        "This session has already ended ({reason}).",
        "このセッションはすでに終了しています ({reason})。",
    ),
    "too_many_connections": (
        "Too many connections from your address are still authenticating; try again shortly.",
        "このアドレスから認証待ちの接続が多すぎます。しばらくしてから再試行してください。",
    ),
    "request_timeout": (
        "The request body did not arrive in time.",
        "リクエスト本文が時間内に届きませんでした。",
    ),
    # secret files (device key, saved logins)
    "secret_file_loose": (
        "{path} holds a secret but other users may read or change it (mode {mode}). "
        "If only you could ever read it, run: chmod 600 {path} ; otherwise delete it "
        "(the agent then gets a new ID; a technician logs in again).",
        "{path} は秘密情報を含みますが、他のユーザーが読み書きできます (モード {mode})。"
        "自分以外が読めなかったのであれば chmod 600 {path} を実行してください。"
        "そうでなければ削除してください (エージェントは新しい ID になり、技術者は再ログインします)。",
    ),
    "secret_file_owner": (
        "{path} belongs to another user; it was not read. Delete it or run as its owner.",
        "{path} は別のユーザーの所有です。読み込みませんでした。削除するか所有者として実行してください。",
    ),
    "secret_file_not_regular": (
        "{path} is a symbolic link or not a regular file; it was not read. Delete it.",
        "{path} はシンボリックリンクか通常のファイルではありません。読み込みませんでした。削除してください。",
    ),
    "secret_file_unreadable": (
        "Cannot read {path}: {error}",
        "{path} を読み込めません: {error}",
    ),
    "secret_file_corrupt": (
        "{path} is corrupt; delete it (the agent then gets a new ID; a technician logs in again).",
        "{path} は壊れています。削除してください (エージェントは新しい ID になり、技術者は再ログインします)。",
    ),
    # technician CLI
    "prompt_password": ("One-time password of {agent_id}: ", "{agent_id} のワンタイムパスワード: "),
    "prompt_login_password": ("Password for {user}: ", "{user} のパスワード: "),
    "logged_in": (
        "Logged in to {server} as {user}.",
        "{server} に {user} としてログインしました。",
    ),
    "connecting": ("Connecting to {agent_id} ...", "{agent_id} に接続しています..."),
    "waiting_consent": ("Waiting for the customer's consent ...", "お客様の同意を待っています..."),
    "connected": (
        "Connected to {agent_id} (end-to-end encrypted). Press Ctrl-C to end the session.",
        "{agent_id} に接続しました (エンドツーエンド暗号化)。Ctrl-C でセッションを終了します。",
    ),
    "vnc_listening": (
        "VNC viewers can connect to {addr} (e.g. `xtigervncviewer {viewer}`).",
        "VNC ビューアーは {addr} に接続できます (例: `xtigervncviewer {viewer}`)。",
    ),
    "remote_no_screen": (
        "The customer's computer has no screen to share (the agent runs without a display).",
        "お客様のコンピューターには共有できる画面がありません (エージェントはディスプレイなしで動作しています)。",
    ),
    "remote_screen_format": (
        "The customer's screen uses a colour format enkaku cannot show (the agent's log on "
        "that computer says how to set the display to 24-bit colour).",
        "お客様の画面は enkaku で表示できない色形式です (24 ビットカラーへの設定方法は、"
        "そのコンピューターのエージェントのログに出ています)。",
    ),
    "remote_screen_failed": (
        "The customer's screen could not be shared, or stopped being shared (the desktop "
        "session ended or the display went away; the agent's log on that computer says "
        "why). Connect the viewer again once the customer is back at the desktop.",
        "お客様の画面を共有できないか、共有が止まりました (デスクトップのセッションが終了したか、"
        "ディスプレイがなくなりました。理由はそのコンピューターのエージェントのログに出ています)。"
        "お客様がデスクトップに戻ったら、ビューアーをもう一度接続してください。",
    ),
    "wrong_password": (
        "Wrong one-time password. Ask the customer to read it again.",
        "ワンタイムパスワードが違います。お客様にもう一度読み上げてもらってください。",
    ),
    "password_replaced": (
        "Too many wrong passwords: the agent drew a new one. Ask the customer for the new password.",
        "パスワードの誤りが多すぎたため、エージェントが新しいパスワードを発行しました。お客様に新しいパスワードを確認してください。",
    ),
    "consent_denied": (
        "The customer did not allow the session.",
        "お客様がセッションを許可しませんでした。",
    ),
    "session_ended": ("Session ended: {reason}.", "セッションが終了しました: {reason}。"),
    "not_logged_in": (
        "Not logged in to {server}: run `enkaku login --server {server} --user NAME`.",
        "{server} にログインしていません: `enkaku login --server {server} --user NAME` を実行してください。",
    ),
    "not_logged_in_anywhere": (
        "Not logged in to any server: run `enkaku login --server https://… --user NAME` first.",
        "どのサーバーにもログインしていません: 先に `enkaku login --server https://… --user NAME` を実行してください。",
    ),
    "malformed_password": (
        "That is not a one-time password ({detail}). It has 8 letters and digits, "
        "e.g. k3m9-x2qa; ask the customer to read it again. Nothing was sent.",
        "ワンタイムパスワードの形式ではありません ({detail})。英数字 8 文字です "
        "(例: k3m9-x2qa)。お客様にもう一度読み上げてもらってください。何も送信していません。",
    ),
    "vnc_listen_not_loopback": (
        "--vnc-listen {addr} is not a loopback address: anyone who can reach it would see and "
        "control the customer's screen (there is no VNC password). Use 127.0.0.1:PORT, or add "
        "--vnc-listen-public if that is what you want.",
        "--vnc-listen {addr} はループバックアドレスではありません。そこに到達できる誰もが"
        "お客様の画面を表示・操作できます (VNC パスワードはありません)。127.0.0.1:PORT を使うか、"
        "意図どおりであれば --vnc-listen-public を付けてください。",
    ),
    "vnc_listen_public": (
        "Warning: the customer's screen will be served on {addr} without a password: anyone "
        "who can reach that address can see and control it.",
        "警告: お客様の画面をパスワードなしで {addr} に公開します。このアドレスに到達できる"
        "誰もが画面を表示・操作できます。",
    ),
    "vnc_listen_failed": (
        "Cannot listen on {addr} for VNC viewers: {detail}. Nothing was sent to the customer; "
        "choose another port (port 0 picks a free one).",
        "VNC ビューアー用に {addr} で待ち受けできません: {detail}。お客様には何も送信していません。"
        "別のポートを指定してください (0 で空きポートを選びます)。",
    ),
    "server_unreachable": (
        "Cannot reach the server {server}: {detail}",
        "サーバー {server} に接続できません: {detail}",
    ),
    "handshake_failed": (
        "The end-to-end handshake failed ({detail}); the session was closed.",
        "エンドツーエンドのハンドシェイクに失敗したため、セッションを閉じました ({detail})。",
    ),
    "interrupted": ("Ending the session ...", "セッションを終了しています..."),
    # agent
    "agent_ready": (
        "Your ID: {agent_id}   Password: {password}",
        "ID: {agent_id}   パスワード: {password}",
    ),
    "agent_wrong_attempt": (
        "Someone tried to connect with a wrong password (attempt {attempt} of {limit}).",
        "誤ったパスワードで接続が試みられました ({limit} 回中 {attempt} 回目)。",
    ),
    "agent_password_replaced": (
        "Wrong password {limit} times: a new one-time password was drawn "
        "(the old one no longer works).",
        "パスワードの誤りが {limit} 回続いたため、新しいワンタイムパスワードを発行しました "
        "(以前のパスワードは使えません)。",
    ),
    "consent_withdrawn": (
        "(The request was withdrawn.)",
        "(要求は取り消されました。)",
    ),
    "consent_no_terminal": (
        "No terminal to ask the customer on: the request is denied.",
        "お客様に確認できる端末がないため、要求を拒否しました。",
    ),
    "session_active": (
        "Session active: {who} is connected. Press Ctrl-C to end it.",
        "セッション中: {who} が接続しています。Ctrl-C で終了します。",
    ),
    "agent_session_ended": ("Session ended ({reason}).", "セッションが終了しました ({reason})。"),
    "agent_offline_retry": (
        "Cannot reach {server} ({detail}); retrying in {delay:.0f} s.",
        "{server} に接続できません ({detail})。{delay:.0f} 秒後に再試行します。",
    ),
    "db_missing": (
        "enkaku: no database at {path}. Check --db (or ENKAKU_DB); `enkaku server` creates "
        "it on its first start, or add --create to make a new, empty one.",
        "enkaku: {path} にデータベースがありません。--db (または ENKAKU_DB) を確認してください。"
        "`enkaku server` は初回起動時に作成します。新しい空のデータベースを作るには --create を付けてください。",
    ),
    "password_too_short": (
        "enkaku: technician passwords need at least 10 characters.",
        "enkaku: 技術者のパスワードは10文字以上必要です。",
    ),
    "agent_replaced": (
        "Another enkaku agent with the same device key went online; this one stops.",
        "同じデバイスキーを持つ別の enkaku エージェントが接続したため、こちらは終了します。",
    ),
    "agent_online": ("Online at {server}.", "{server} に接続しました。"),
    # `enkaku end` and the end hint of `enkaku connect`
    "connected_end_hint": (
        "To end it with a recorded reason: `enkaku end {session_id} --reason REASON "
        "--comment TEXT` (see `enkaku end --help`).",
        "理由を記録して終了するには `enkaku end {session_id} --reason REASON --comment TEXT` "
        "を実行してください (`enkaku end --help` を参照してください)。",
    ),
    "end_done": (
        "Session {session_id} ended: {reason}.",
        "セッション {session_id} を終了しました: {reason}。",
    ),
    "end_comment_too_long": (
        "The comment has {length} characters; at most {limit} are allowed. Nothing was sent.",
        "コメントが {length} 文字あります。{limit} 文字以内にしてください。何も送信していません。",
    ),
    "end_comment_missing": (
        "The end reason {reason} needs --comment saying what you found. Nothing was sent.",
        "終了理由 {reason} には、何が見つかったかを説明する --comment が必要です。"
        "何も送信していません。",
    ),
    "end_http_error": (
        "The server did not end the session (HTTP {status}).",
        "サーバーはセッションを終了しませんでした (HTTP {status})。",
    ),
    "login_http_error": (
        "Login failed (HTTP {status}).",
        "ログインに失敗しました (HTTP {status})。",
    ),
    "session_http_error": (
        "The server refused the session (HTTP {status}).",
        "サーバーがセッションを拒否しました (HTTP {status})。",
    ),
    # command-line arguments and start-up errors (src/enkaku/cli.py)
    "arg_hostport": (
        "expected HOST:PORT, got {value!r}",
        "HOST:PORT の形式で指定してください ({value!r} が指定されました)",
    ),
    "arg_server_url": (
        "expected a server URL such as https://support.example.com, got {value!r}",
        "https://support.example.com のようなサーバー URL を指定してください "
        "({value!r} が指定されました)",
    ),
    "arg_server_url_scheme": (
        " (add https:// or http://)",
        " (https:// または http:// を付けてください)",
    ),
    "arg_day": (
        "expected a day as YYYY-MM-DD, got {value!r}",
        "日付は YYYY-MM-DD の形式で指定してください ({value!r} が指定されました)",
    ),
    "arg_agent_id": (
        "an agent ID has 9 digits, got {value!r}",
        "エージェント ID は 9 桁の数字です ({value!r} が指定されました)",
    ),
    "arg_session_id": (
        "a session ID has 32 hexadecimal characters, got {value!r}",
        "セッション ID は 32 文字の 16 進数です ({value!r} が指定されました)",
    ),
    "command_required": (
        "a command is required (see `enkaku --help`)",
        "コマンドを指定してください (`enkaku --help` を参照してください)",
    ),
    "secret_env_missing": (
        "enkaku: set {env} or run in a terminal to be prompted",
        "enkaku: {env} を設定するか、端末で実行して入力してください",
    ),
    "prompt_new_password": ("Password for {user}: ", "{user} の新しいパスワード: "),
    "user_added": ("added {role} {user}", "{role} {user} を追加しました。"),
    "role_technician": ("technician", "技術者"),
    "role_admin": ("admin", "管理者"),
    "contract_added": ("added contract {code}", "契約 {code} を追加しました。"),
    "ca_file_missing": ("CA file {path} does not exist", "CA ファイル {path} が存在しません"),
    "tls_unusable": (
        "enkaku server: cannot use the TLS certificate {cert} with the key {key}: {reason}",
        "enkaku server: TLS 証明書 {cert} と秘密鍵 {key} を使用できません: {reason}",
    ),
    "tls_not_pem": (
        "not a usable PEM certificate chain and matching private key",
        "使用できる PEM 形式の証明書チェーンと対応する秘密鍵ではありません",
    ),
    "listen_failed": (
        "enkaku server: cannot listen on {addr}: {reason}",
        "enkaku server: {addr} で待ち受けできません: {reason}",
    ),
    "db_invalid_url": (
        "invalid database URL ({detail}); example: sqlite:///path/enkaku.db",
        "データベース URL が不正です ({detail})。例: sqlite:///path/enkaku.db",
    ),
    "db_unsupported": (
        "unsupported database {backend!r}: use sqlite:/// or postgresql://",
        "データベース {backend!r} には対応していません。sqlite:/// または postgresql:// を"
        "使ってください",
    ),
    # server settings (src/enkaku/server/settings.py): each names its setting first
    "setting_port": (
        "port: {port} is not a TCP port",
        "port: {port} は TCP ポート番号ではありません",
    ),
    "setting_tls_pair": (
        "tls_cert / tls_key: give both or neither",
        "tls_cert / tls_key: 両方を指定するか、どちらも指定しないでください",
    ),
    "setting_plain_http": (
        "host: plain HTTP is only allowed on loopback, not on {host}; "
        "give --tls-cert and --tls-key, or --behind-proxy when a TLS proxy is in front",
        "host: 暗号化なしの HTTP はループバックでのみ使えます ({host} では使えません)。"
        "--tls-cert と --tls-key を指定するか、TLS プロキシの背後で動かす場合は "
        "--behind-proxy を指定してください",
    ),
    "setting_public_url_required": (
        "public_url: required with behind_proxy; give --public-url "
        "https://support.example.com (the address the proxy serves)",
        "public_url: behind_proxy では必須です。--public-url https://support.example.com "
        "のように、プロキシが公開するアドレスを指定してください",
    ),
    "setting_public_url_https": (
        "public_url: {url!r} must be an https:// URL (http:// only on loopback)",
        "public_url: {url!r} は https:// の URL にしてください (http:// はループバックのみ)",
    ),
    "setting_heartbeat": (
        "heartbeat_timeout: must be more than 0.5 seconds",
        "heartbeat_timeout: 0.5 秒より大きくしてください",
    ),
    "setting_agent_heartbeat": (
        "agent_heartbeat: must be between 2 and 3600 seconds",
        "agent_heartbeat: 2 秒以上 3600 秒以下にしてください",
    ),
    "setting_positive_seconds": (
        "{name}: must be more than 0 seconds",
        "{name}: 0 秒より大きくしてください",
    ),
    "setting_at_least_one": ("{name}: must be at least 1", "{name}: 1 以上にしてください"),
    "setting_not_negative": ("{name}: must not be negative", "{name}: 負の値は指定できません"),
    "setting_expiry_negative": (
        "agent_expiry_days: must not be negative (0: never)",
        "agent_expiry_days: 負の値は指定できません (0: 削除しない)",
    ),
    "setting_unparsable": (
        "{var}: cannot parse {raw!r}",
        "{var}: {raw!r} を解釈できません",
    ),
    "proxy_not_http": (
        "{name} must be an http:// proxy URL such as http://proxy.example.com:3128, got {url}",
        "{name} には http://proxy.example.com:3128 のような http:// のプロキシ URL を"
        "指定してください ({url} が指定されました)",
    ),
    "relay_open_failed": (
        "cannot open the relay connection: {detail}",
        "中継接続を開けません: {detail}",
    ),
    "store_unknown_role": (
        "unknown role {role!r}: use admin or technician",
        "ロール {role!r} は存在しません。admin または technician を指定してください",
    ),
    "store_technician_exists": (
        "a technician named {user!r} already exists",
        "技術者 {user!r} はすでに存在します",
    ),
    "store_contract_exists": (
        "a contract with code {code!r} already exists",
        "契約コード {code!r} の契約はすでに存在します",
    ),
    "db_cannot_open": (
        "cannot open or migrate the database: {detail}",
        "データベースを開けないか、スキーマを更新できません: {detail}",
    ),
}


#: How each session end reason (protocol.control.END_REASONS) reads to a person.
REASONS: dict[str, tuple[str, str]] = {
    "technician_ended": ("the technician ended it", "技術者が終了しました"),
    "customer_ended": ("the customer ended it", "お客様が終了しました"),
    "consent_denied": ("the customer did not allow it", "お客様が許可しませんでした"),
    "wrong_password": ("wrong password", "パスワードが違います"),
    "handshake_failed": ("the encrypted handshake failed", "暗号化の確立に失敗しました"),
    "protocol_error": ("invalid data was received", "不正なデータを受信しました"),
    "agent_disconnected": (
        "the customer's computer went offline",
        "お客様のコンピューターとの接続が切れました",
    ),
    "technician_disconnected": ("the technician went offline", "技術者との接続が切れました"),
    "timeout": ("the other side did not answer in time", "相手が時間内に応答しませんでした"),
    "server_restart": ("the server restarted", "サーバーが再起動しました"),
    "server_shutdown": ("the server shut down", "サーバーが停止しました"),
    "device_malfunction": (
        "the device is malfunctioning or modified",
        "機器の故障または改造が見つかりました",
    ),
    "malware_found": ("malware was found", "マルウェアが見つかりました"),
    "credentials_refused": (
        "required credentials were refused",
        "必要な認証情報の提供が拒否されました",
    ),
    "illegal_request": ("an illegal request was made", "違法な依頼がありました"),
    "busy": ("the agent is already in a session", "エージェントは別のセッション中です"),
    "connection_lost": ("the connection was lost", "接続が失われました"),
}


# Characters that break a line when printed; they become one space.
_LINE_BREAKS = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


def printable(text: str, limit: int = 256) -> str:
    """``text`` from a peer or the server, safe to print on a terminal or a window.

    Control characters (C0, DEL, C1 — so no ESC sequences), format characters (bidi
    overrides and isolates, zero-width marks) and lone surrogates are removed; line and
    tab characters become a space; the result is cut at ``limit`` characters.
    """
    out: list[str] = []
    for ch in str(text):
        if ch in _LINE_BREAKS:
            out.append(" ")
        elif unicodedata.category(ch) not in ("Cc", "Cf", "Cs"):
            out.append(ch)
        if len(out) >= limit:
            break
    return "".join(out)


def reason_text(code: str, lang: str | None = None) -> str:
    """A session end reason in words (the code itself, made printable, if unknown)."""
    pair = REASONS.get(code)
    if pair is None:
        return printable(code, 64)
    return pair[1] if (lang or language()) == "ja" else pair[0]


def language() -> str:
    """'ja' or 'en', from the environment."""
    for var in ("ENKAKU_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        value = os.environ.get(var)
        if value:
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"


def register(entries: dict[str, tuple[str, str]]) -> None:
    """Add a module's own messages (English, Japanese) to CATALOG; a key may be defined once."""
    # The same entries again are no clash: `python -m enkaku.cli` runs cli.py as __main__
    # and then imports it as enkaku.cli (admin_cli, session_cli), registering twice.
    clash = {key for key in entries if key in CATALOG and CATALOG[key] != entries[key]}
    if clash:
        raise ValueError(f"message keys defined twice: {sorted(clash)}")
    CATALOG.update(entries)


def t(key: str, lang: str | None = None, /, **kwargs: object) -> str:
    """The message ``key`` in ``lang`` (default: the environment's), formatted."""
    en, ja = CATALOG[key]
    text = ja if (lang or language()) == "ja" else en
    return text.format(**kwargs) if kwargs else text


def both(key: str, **kwargs: object) -> dict[str, str]:
    """The message in both languages, for API error bodies."""
    en, ja = CATALOG[key]
    return {"en": en.format(**kwargs), "ja": ja.format(**kwargs)}
