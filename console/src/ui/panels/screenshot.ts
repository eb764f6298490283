// Screenshot: asks the customer each time, shows the PNG, saves it on request.

import { t } from "../../i18n";
import { takeScreenshot } from "../../services/screenshot";
import { byId, el, showMessage } from "../common";
import { type PanelContext, toolErrorText } from "../panels";

export function setupScreenshot(ctx: PanelContext): void {
  const panel = byId("panel-screenshot");
  const button = el("button", { type: "button", id: "screenshot-take", "data-i18n": "screenshot_take" }, t("screenshot_take"));
  const message = el("p", { class: "message", role: "alert", hidden: "" });
  const image = el("img", { class: "shot", id: "screenshot-image", alt: "", hidden: "" });
  const saveLink = el("a", { id: "screenshot-save", "data-i18n": "screenshot_save", hidden: "" }, t("screenshot_save"));
  panel.append(button, message, image, el("p", {}, saveLink));
  let url: string | null = null;
  button.addEventListener("click", async () => {
    button.disabled = true;
    showMessage(message, t("loading"), "info");
    try {
      const shot = await takeScreenshot(ctx.session, {
        onAsking: () => showMessage(message, t("asking_customer"), "info"),
      });
      if (url) URL.revokeObjectURL(url);
      url = URL.createObjectURL(shot.blob);
      image.src = url;
      image.hidden = false;
      image.dataset.width = String(shot.width);
      image.dataset.height = String(shot.height);
      const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
      saveLink.href = url;
      saveLink.download = `screenshot-${stamp}.png`;
      saveLink.hidden = false;
      showMessage(message, t("screenshot_size", { width: shot.width, height: shot.height }), "ok");
    } catch (e) {
      showMessage(message, toolErrorText(e));
    } finally {
      button.disabled = false;
    }
  });
}
