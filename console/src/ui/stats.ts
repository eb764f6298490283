// Latency and data used, in the session bar.
//
// Data: the channel's record bytes on the wire, both ways (what the customer's line
// carries, apart from TCP/TLS overhead). Latency: the time for a `request` of an action
// already granted ("screen") to come back answered: the agent answers such a request at
// once, without asking the customer or reporting anything, so it measures the path
// page → relay → customer's computer → relay → page. It is measured only while screen is
// granted, so it can never put a question to the customer.

import { bytesText, t } from "../i18n";
import { byId } from "./common";
import type { Tracked } from "./consent";

interface StatsSource {
  readonly stats: { bytesSent: number; bytesReceived: number };
  readonly closed: Promise<unknown>;
}

const DATA_EVERY_MS = 1000;
const LATENCY_EVERY_MS = 5000;

export function setupStats(channel: StatsSource, tracked: Tracked): void {
  const data = byId("data-used");
  const latency = byId("latency");
  let done = false;
  const showData = () => {
    const { bytesSent, bytesReceived } = channel.stats;
    data.textContent = t("data_value", { up: bytesText(bytesSent), down: bytesText(bytesReceived) });
    data.dataset.bytes = String(bytesSent + bytesReceived);
  };
  const dataTimer = setInterval(showData, DATA_EVERY_MS);
  showData();
  let measuring = false;
  const measure = async () => {
    if (done || measuring || !tracked.granted().includes("screen")) return;
    measuring = true;
    const start = performance.now();
    try {
      await tracked.session.ask("screen");
    } catch {
      return;
    } finally {
      measuring = false;
    }
    const ms = Math.round(performance.now() - start);
    latency.textContent = t("latency_value", { ms });
  };
  const latencyTimer = setInterval(() => void measure(), LATENCY_EVERY_MS);
  tracked.onChange(() => void (latency.textContent === "—" && measure()));
  void channel.closed.then(() => {
    done = true;
    clearInterval(latencyTimer);
    showData();
    clearInterval(dataTimer);
  });
}
