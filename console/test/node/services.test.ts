// The console's service clients (console/src/services) against a real server and a real
// Python agent on Xvfb: driven by tests/console/test_js_services.py, which starts both,
// puts files in a customer folder, asks the server for a session and runs this file
// with the session in the environment. Skipped without that environment.
//
// Each tool once: system information, a file each way (and a folder as .tar), a folder
// listing, a screenshot, a terminal command, a typed text. What it got goes to
// ENKAKU_E2E_RESULT (JSON) and files next to it, for the Python test to check against
// the customer's side.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { sha256 } from "@noble/hashes/sha2.js";
import { describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { Channel } from "../../src/protocol/channel";
import { TechnicianSession } from "../../src/protocol/control";
import { hex } from "../../src/services/common";
import { PartialStore, browseFolder, sendFile, takeFile } from "../../src/services/files";
import { takeScreenshot } from "../../src/services/screenshot";
import { fetchSystemInfo, reportToJson, reportView } from "../../src/services/sysinfo";
import { openTerminal } from "../../src/services/terminal";
import { typeText } from "../../src/services/typetext";

const env = process.env;
const ready = Boolean(env.ENKAKU_E2E_RELAY_URL && env.ENKAKU_E2E_RESULT && env.ENKAKU_E2E_WORK);

function payload(n: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = 7;
  for (let i = 0; i < n; i++) out[i] = x = (x * 1103515245 + 12345) & 0xff;
  return out;
}

describe.skipIf(!ready)("the service clients with the Python agent (run by tests/console/test_js_services.py)", () => {
  it("every tool once", { timeout: 240_000 }, async () => {
    const work = env.ENKAKU_E2E_WORK as string;
    const out = env.ENKAKU_E2E_RESULT as string;
    const result: Record<string, unknown> = {};
    const channel = await Channel.connect({
      relayUrl: env.ENKAKU_E2E_RELAY_URL as string,
      relayToken: env.ENKAKU_E2E_RELAY_TOKEN as string,
      agentId: env.ENKAKU_E2E_AGENT_ID as string,
      password: env.ENKAKU_E2E_PASSWORD as string,
      WebSocketImpl: WebSocket,
    });
    const session = new TechnicianSession(channel);
    expect((await session.consented).granted).toBe(true);
    try {
      const report = await fetchSystemInfo(session, { purpose: "console test" });
      const view = reportView(report, "ja");
      result.sysinfo = {
        keys: Object.keys(JSON.parse(reportToJson(report))).slice(0, 2),
        groups: view.groups.length,
        title: view.title,
      };

      const content = payload(3 * 1024 * 1024 + 5);
      let progressEvents = 0;
      const sent = await sendFile(session, new Blob([content as BlobPart]), "from-console.bin", {
        dest: work,
        onProgress: () => (progressEvents += 1),
      });
      result.sent = { ...sent, expected: hex(sha256(content)), progressEvents };

      const listing = await browseFolder(session, work);
      result.listing = listing.entries.map((e) => [e.name, e.type, e.size]);

      const store = new PartialStore();
      const file = await takeFile(session, join(work, "customer.bin"), store, { size: Number(env.ENKAKU_E2E_SIZE) });
      result.taken = { name: file.name, size: file.size, sha256: hex(sha256(new Uint8Array(await file.blob.arrayBuffer()))) };
      const folder = await takeFile(session, join(work, "folder"), store);
      writeFileSync(`${out}.tar`, new Uint8Array(await folder.blob.arrayBuffer()));
      result.folder = { name: folder.name, archive: folder.archive, skipped: folder.skipped };

      const shot = await takeScreenshot(session);
      writeFileSync(`${out}.png`, new Uint8Array(await shot.blob.arrayBuffer()));
      result.screenshot = [shot.width, shot.height];

      const shell = await openTerminal(session, { cols: 100, rows: 30 });
      const output: Uint8Array[] = [];
      shell.onData((b) => output.push(b));
      await shell.write("echo js-term-$((6*7)); exit 3\r");
      const end = await shell.ended;
      result.terminal = {
        hello: shell.hello,
        output: new TextDecoder().decode(Buffer.concat(output)),
        end,
      };

      result.typed = await typeText(session, env.ENKAKU_E2E_TYPE as string);
    } finally {
      writeFileSync(out, JSON.stringify(result));
      await channel.close("technician_ended");
    }
  });
});
