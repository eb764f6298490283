"""The agent window's messages, English and Japanese (keys ``window_*``)."""

from __future__ import annotations

from enkaku.i18n import register

register(
    {
        "window_title": ("enkaku remote support", "enkaku リモートサポート"),
        "window_intro": (
            "Read this ID and password to your support technician.",
            "この ID とパスワードをサポート担当者にお伝えください。",
        ),
        "window_id": ("Your ID", "ID"),
        "window_enrolment_required": (
            "This computer is not registered with the support company yet: enter the "
            "enrolment code they gave you below.",
            "このコンピューターはまだサポート会社に登録されていません。受け取った登録コードを"
            "下に入力してください。",
        ),
        "window_enrol_code": ("Enrolment code", "登録コード"),
        "window_enrol_send": ("Register", "登録する"),
        "window_enrol_asking": (
            "The code looks like K7QD-9XMF-2HWR-T4PB; upper or lower case both work.",
            "コードは「K7QD-9XMF-2HWR-T4PB」のような形式です。大文字・小文字はどちらでも構いません。",
        ),
        "window_enrol_checking": (
            "Checking the code with the support server ...",
            "サポートサーバーでコードを確認しています...",
        ),
        "window_enrol_busy": (
            "A code can be entered only when no support session is running. Try again "
            "after the session.",
            "登録コードはサポート中には入力できません。セッションが終わってから入力してください。",
        ),
        "window_password": ("Password", "パスワード"),
        "window_new_password": ("New password", "新しいパスワード"),
        "window_language": ("Language:", "言語:"),
        "window_status_connecting": (
            "Connecting to the support server ...",
            "サポートサーバーに接続しています...",
        ),
        "window_status_online": (
            "Ready: connected to the support server {server}.",
            "準備完了: サポートサーバー {server} に接続しています。",
        ),
        "window_status_offline": (
            "Offline: the support server {server} cannot be reached ({detail}). "
            "Next try in {delay:.0f} s.",
            "オフライン: サポートサーバー {server} に接続できません ({detail})。"
            "{delay:.0f} 秒後に再試行します。",
        ),
        "window_offline_help": (
            "Check that this computer is connected to the internet. The program keeps "
            "trying by itself; if this lasts, call your support company.",
            "このコンピューターがインターネットにつながっているか確認してください。"
            "自動で再試行します。続く場合はサポート会社にお電話ください。",
        ),
        "window_status_stopped": (
            "Stopped: the program no longer accepts connections. Close this window.",
            "停止しました: 接続を受け付けていません。このウィンドウを閉じてください。",
        ),
        "window_consent_title": ("Permission requested", "許可の確認"),
        "window_consent_who": ("{who} asks to:", "{who} が次の操作を求めています:"),
        "window_consent_allow": ("Allow", "許可する"),
        "window_consent_deny": ("Deny", "拒否する"),
        "window_consent_countdown": (
            "No answer within {seconds} s means Deny.",
            "{seconds} 秒以内に応答がない場合は拒否になります。",
        ),
        "window_consent_paused": (
            "Remote control is paused while this question is open.",
            "この確認が表示されている間、遠隔操作は停止しています。",
        ),
        "window_consent_reminder": (
            "Before you allow: please stay at this computer for the whole session, and "
            "make sure your important data is backed up.",
            "許可する前に: セッション中はこのコンピューターの前にいてください。"
            "また、大切なデータのバックアップがあることを確認してください。",
        ),
        "window_banner_title": ("Remote support session", "リモートサポート中"),
        "window_banner_who": ("Connected: {who}", "接続中: {who}"),
        "window_banner_elapsed": ("Time: {elapsed}", "経過時間: {elapsed}"),
        "window_banner_data": (
            "Data used: {sent} sent, {received} received",
            "通信量: 送信 {sent}、受信 {received}",
        ),
        "window_banner_active": ("Active: {what}", "実行中: {what}"),
        "window_banner_nothing": ("nothing", "なし"),
        "window_list_separator": (", ", "、"),
        "window_banner_control_paused": ("control paused", "操作は一時停止中"),
        "window_act_screen": ("screen", "画面"),
        "window_act_control": ("control", "操作"),
        "window_act_clipboard": ("clipboard", "クリップボード"),
        "window_act_terminal": ("terminal", "端末"),
        "window_act_browse": ("folder listing", "フォルダー一覧"),
        "window_act_system_info": ("system information", "システム情報"),
        "window_pause": ("Pause control", "操作を一時停止"),
        "window_resume": ("Resume control", "操作を再開"),
        "window_end": ("End session", "セッションを終了"),
        "window_chat_send": ("Send", "送信"),
        "window_chat_you": ("You", "あなた"),
        "window_summary_title": ("Session ended", "セッション終了"),
        "window_summary": (
            "The session has ended: {reason}.\nDuration: {elapsed}\n"
            "Data used: {sent} sent, {received} received.",
            "セッションが終了しました: {reason}。\n時間: {elapsed}\n"
            "通信量: 送信 {sent}、受信 {received}。",
        ),
        "window_summary_allowed": (
            "What you allowed during the session:",
            "セッション中に許可した操作:",
        ),
        "window_ok": ("OK", "OK"),
        "window_terms_title": ("Terms of use", "利用規約"),
        "window_terms_head": (
            "Terms of use, version {version}, in force from {effective}.\nPlease read "
            "them; your ID appears once you accept.",
            "利用規約 バージョン {version} ({effective} から有効)\nお読みください。"
            "同意すると ID が表示されます。",
        ),
        "window_terms_accept": ("Accept", "同意する"),
        "window_terms_decline": ("Decline", "同意しない"),
        "window_terms_upcoming": (
            "New terms of use (version {version}) take effect on {effective}.",
            "新しい利用規約 (バージョン {version}) が {effective} から有効になります。",
        ),
        "window_no_tk": (
            "Tk is not installed; on Debian or Ubuntu: sudo apt install python3-tk",
            "Tk がインストールされていません。Debian / Ubuntu では sudo apt install python3-tk "
            "を実行してください",
        ),
        "window_no_display": (
            "no screen to show it on: {detail}",
            "表示できる画面がありません: {detail}",
        ),
        "window_fallback": (
            "enkaku agent: cannot open the window ({detail}); using this terminal instead.",
            "enkaku agent: ウィンドウを開けません ({detail})。この端末で続けます。",
        ),
    }
)
