// Files: drop (or choose) files to send them to the customer's incoming folder, browse
// the customer's folders and take a file or folder. Every transfer has its own line
// with progress, speed and time left; several run at once. A cut download keeps its part
// in memory (PartialStore) and resumes when taken again.

import { bytesText, durationText, lang, t } from "../../i18n";
import {
  type Entry,
  type Listing,
  PartialStore,
  browseFolder,
  childPath,
  parentFolder,
  sendFile,
  takeFile,
} from "../../services/files";
import type { Progress } from "../../services/common";
import { byId, el, showMessage } from "../common";
import { type PanelContext, toolErrorText } from "../panels";

const store = new PartialStore();

interface Row {
  update(p: Progress): void;
  state(text: string, kind: "asking" | "running" | "done" | "failed"): void;
}

function transferRow(list: HTMLElement, direction: "send" | "take", name: string): Row {
  const bar = el("progress", { max: "1", value: "0" });
  const status = el("span", { class: "hint" }, t("asking_customer"));
  const line = el(
    "div",
    { class: "transfer", "data-direction": direction, "data-name": name, "data-state": "asking" },
    el("div", {}, `${direction === "send" ? "↑" : "↓"} ${name}`),
    bar,
    status,
  );
  list.prepend(line);
  return {
    update(p) {
      bar.max = Math.max(1, p.total);
      bar.value = p.done;
      line.dataset.done = String(p.done);
      line.dataset.total = String(p.total);
      const parts = [`${bytesText(p.done)} / ${bytesText(p.total)}`];
      if (p.bytesPerSecond !== null) parts.push(t("speed", { speed: bytesText(Math.round(p.bytesPerSecond)) }));
      if (p.secondsLeft !== null && p.done < p.total) parts.push(t("time_left", { time: durationText(p.secondsLeft) }));
      status.textContent = parts.join(" · ");
      line.dataset.state = "running";
    },
    state(text, kind) {
      status.textContent = text;
      line.dataset.state = kind;
    },
  };
}

function save(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

export function setupFiles(ctx: PanelContext): void {
  const panel = byId("panel-files");
  const input = el("input", { type: "file", id: "files-input", multiple: "", hidden: "" });
  const choose = el("button", { type: "button", id: "files-choose", "data-i18n": "files_choose" }, t("files_choose"));
  const drop = el("div", { class: "dropzone", id: "files-drop" }, el("p", { "data-i18n": "files_drop" }, t("files_drop")), choose, input);
  const overwrite = el("input", { type: "checkbox", id: "files-overwrite" });
  const overwriteLabel = el("label", { class: "check" }, overwrite, el("span", { "data-i18n": "files_overwrite" }, t("files_overwrite")));
  const transfers = el("div", { id: "transfers" });
  const path = el("input", { id: "browse-path", spellcheck: "false", "data-i18n-placeholder": "browse_home" });
  path.placeholder = t("browse_home");
  const go = el("button", { type: "button", id: "browse-go", "data-i18n": "browse" }, t("browse"));
  const up = el("button", { type: "button", id: "browse-up", "data-i18n": "browse_up" }, t("browse_up"));
  const message = el("p", { class: "message", role: "alert", hidden: "" });
  const listing = el("ul", { class: "file-list", id: "browse-list" });
  panel.append(
    el("h3", { "data-i18n": "files_send" }, t("files_send")),
    drop,
    overwriteLabel,
    transfers,
    el("h3", { "data-i18n": "files_take" }, t("files_take")),
    el("div", { class: "row" }, path, go, up),
    message,
    listing,
  );

  const send = (files: Iterable<File>) => {
    for (const file of files) {
      const row = transferRow(transfers, "send", file.name);
      sendFile(ctx.session, file, file.name, {
        overwrite: overwrite.checked,
        onHashing: () => row.state(t("files_hashing"), "asking"),
        onAsking: () => row.state(t("asking_customer"), "asking"),
        onProgress: (p) => row.update(p),
      })
        .then((sent) => row.state(t("files_sent", { name: sent.name, size: bytesText(sent.size) }), "done"))
        .catch((e) => row.state(toolErrorText(e), "failed"));
    }
  };
  choose.addEventListener("click", () => input.click());
  input.addEventListener("change", () => {
    if (input.files) send([...input.files]);
    input.value = "";
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer?.files) send([...e.dataTransfer.files]);
  });

  let current: Listing | null = null;
  const take = (entry: Entry) => {
    if (!current) return;
    const full = childPath(current.path, entry.name);
    const name = entry.type === "dir" ? `${entry.name}.tar` : entry.name;
    const row = transferRow(transfers, "take", name);
    takeFile(ctx.session, full, store, {
      size: entry.type === "file" ? entry.size : undefined,
      onAsking: () => row.state(t("asking_customer"), "asking"),
      onProgress: (p) => row.update(p),
    })
      .then((got) => {
        row.state(t("files_received", { name: got.name, size: bytesText(got.size) }), "done");
        save(got.blob, got.name);
      })
      .catch((e) => row.state(toolErrorText(e), "failed"));
  };
  const show = (l: Listing) => {
    current = l;
    path.value = l.path;
    const fmt = new Intl.DateTimeFormat(lang() === "ja" ? "ja-JP" : "en-GB", { dateStyle: "short", timeStyle: "short" });
    listing.replaceChildren(
      ...l.entries.map((entry) => {
        const label = entry.type === "dir" ? `📁 ${entry.name}` : entry.name;
        const nameCell =
          entry.type === "dir"
            ? el("button", { type: "button", class: "link-button", "data-open": entry.name }, label)
            : el("span", {}, label);
        nameCell.addEventListener("click", () => {
          if (entry.type === "dir" && current) void open(childPath(current.path, entry.name));
        });
        const takeButton = el("button", { type: "button", "data-take": entry.name }, t("files_take_one"));
        takeButton.addEventListener("click", () => take(entry));
        const info = entry.type === "file" ? bytesText(entry.size) : "";
        return el(
          "li",
          {},
          nameCell,
          el("span", { class: "hint" }, `${info} ${entry.mtime ? fmt.format(new Date(entry.mtime * 1000)) : ""}`),
          entry.type === "file" || entry.type === "dir" ? takeButton : el("span"),
        );
      }),
    );
    if (l.truncated) listing.append(el("li", { class: "hint" }, t("browse_truncated")));
  };
  const open = async (where: string) => {
    showMessage(message, t("loading"), "info");
    try {
      const l = await browseFolder(ctx.session, where, {
        onAsking: () => showMessage(message, t("asking_customer"), "info"),
      });
      showMessage(message, null);
      show(l);
    } catch (e) {
      showMessage(message, toolErrorText(e));
    }
  };
  go.addEventListener("click", () => void open(path.value.trim()));
  path.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.isComposing) void open(path.value.trim());
  });
  up.addEventListener("click", () => current && void open(parentFolder(current.path)));
}
