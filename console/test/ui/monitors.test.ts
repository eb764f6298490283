// The monitor picker's logic: the screen list as the agent sends it, what the picker
// offers after each layout and probe, the notices, and the probe's RFB client
// (docs/performance.md, "Monitors").

import { describe, expect, it } from "vitest";
import {
  type Layout,
  type MonitorState,
  NO_MONITORS,
  choices,
  onLayout,
  onProbe,
  parseScreens,
  readLayout,
  requestFor,
  selected,
} from "../../src/ui/monitors";

type Row = [number, number, number, number, number];

function body(...screens: Row[]): Uint8Array {
  const out = new Uint8Array(4 + 16 * screens.length);
  const view = new DataView(out.buffer);
  out[0] = screens.length;
  screens.forEach(([id, x, y, w, h], i) => {
    view.setUint32(4 + 16 * i, id);
    view.setUint16(8 + 16 * i, x);
    view.setUint16(10 + 16 * i, y);
    view.setUint16(12 + 16 * i, w);
    view.setUint16(14 + 16 * i, h);
    view.setUint32(16 + 16 * i, 0xdeadbeef); // flags: ignored
  });
  return out;
}

const LEFT = { id: 1, x: 0, y: 0, w: 1024, h: 768 };
const RIGHT = { id: 2, x: 1024, y: 0, w: 800, h: 600 };
const W = 1824;
const H = 768;

function layout(reason: number, width: number, height: number, ...screens: (typeof LEFT)[]): Layout {
  return { reason, status: 0, width, height, screens };
}

const desktop = layout(0, W, H, LEFT, RIGHT);
const rightAlone = (reason: number): Layout => layout(reason, 800, 600, { ...RIGHT, x: 0 });

/** The state with monitor 2 shown alone, chosen from the picker. */
function showingRight(): MonitorState {
  const all = onLayout(NO_MONITORS, desktop, null).state;
  return onLayout(all, rightAlone(1), 2).state;
}

describe("monitors", () => {
  it("reads the screen list", () => {
    expect(parseScreens(body([1, 0, 0, 1024, 768], [2, 1024, 0, 800, 600]))).toEqual([LEFT, RIGHT]);
    expect(parseScreens(body())).toEqual([]);
  });

  it("offers the desktop's monitors and follows the one shown", () => {
    const step = onLayout(NO_MONITORS, desktop, null);
    expect(step).toEqual({
      state: { width: W, height: H, monitors: [LEFT, RIGHT], shown: 0, view: { w: W, h: H } },
      notice: null,
      probe: false,
    });
    const all = step.state;
    expect(choices(all)).toEqual([LEFT, RIGHT]);
    expect(selected(all)).toBe(0);
    expect(requestFor(all, 2)).toEqual([800, 600, 2]);
    expect(requestFor(all, 0)).toEqual([W, H, 0]);
    expect(requestFor(all, 7)).toBeNull();
    const two = onLayout(all, rightAlone(1), 2);
    expect(two.state.shown).toBe(2);
    expect(two.probe).toBe(false);
    expect(choices(two.state)).toEqual([LEFT, RIGHT]); // the whole desktop's list is kept
    expect(selected(two.state)).toBe(2);
    // Back to the whole desktop, as asked: no notice.
    expect(onLayout(two.state, layout(1, W, H, LEFT, RIGHT), 0)).toMatchObject({ notice: null, state: { shown: 0 } });
  });

  it("follows the desktop's changes while it is shown whole", () => {
    const all = onLayout(NO_MONITORS, desktop, null).state;
    const middle = { id: 2, x: 500, y: 100, w: 640, h: 480 };
    const three = onLayout(all, layout(0, W, H, LEFT, middle, { ...RIGHT, id: 3 }), null);
    expect(three).toMatchObject({ notice: null, probe: false });
    expect(choices(three.state)?.map((s) => s.id)).toEqual([1, 2, 3]);
    // Down to one monitor smaller than the screen: nothing to choose.
    const one = onLayout(three.state, layout(0, W, H, LEFT), null);
    expect(choices(one.state)).toBeNull();
    expect(one.notice).toBeNull();
  });

  it("says when the chosen monitor is gone and offers what is left", () => {
    const gone = onLayout(showingRight(), layout(0, W, H, LEFT, { ...RIGHT, id: 2, x: 1024, y: 0, w: 640, h: 480 }), null);
    expect(gone.notice).toEqual({ key: "monitor_gone", n: 2 });
    expect(gone.state.shown).toBe(0);
    expect(gone.probe).toBe(false);
    // Only monitor 1 left, on the same screen: the picker goes (nothing to choose).
    const last = onLayout(showingRight(), layout(0, W, H, LEFT), null);
    expect(last.notice).toEqual({ key: "monitor_gone", n: 2 });
    expect(choices(last.state)).toBeNull();
  });

  it("probes when the agent changes the shown monitor's screen itself", () => {
    // Monitor 2 renumbered 3 (one added on its left): its screen alone, reason 0.
    const moved = onLayout(showingRight(), layout(0, 800, 600, { ...RIGHT, id: 3, x: 0 }), null);
    expect(moved).toMatchObject({ notice: null, probe: true, state: { shown: 3 } });
    // Until the probe answers, only what is sure: the whole desktop and the one shown.
    expect(choices(moved.state)).toEqual([{ ...RIGHT, id: 3, x: 0 }]);
    expect(selected(moved.state)).toBe(3);
    const middle = { id: 2, x: 500, y: 100, w: 640, h: 480 };
    const probed = onProbe(moved.state, layout(0, W, H, LEFT, middle, { ...RIGHT, id: 3 }));
    expect(probed.notice).toBeNull();
    expect(choices(probed.state)?.map((s) => s.id)).toEqual([1, 2, 3]);
    expect(selected(probed.state)).toBe(3);
    // Taller: the same monitor, a new size.
    const taller = onLayout(showingRight(), layout(0, 800, 700, { ...RIGHT, x: 0, h: 700 }), null);
    expect(taller.probe).toBe(true);
    const after = onProbe(taller.state, layout(0, W, H, LEFT, { ...RIGHT, h: 700 }));
    expect(requestFor(after.state, 2)).toEqual([800, 700, 2]);
  });

  it("a probe drops monitors that went away while one is shown", () => {
    const shown = onLayout(onLayout(NO_MONITORS, layout(0, W + 300, H, LEFT, RIGHT, { id: 3, x: W, y: 0, w: 300, h: 200 }), null).state, layout(1, 1024, 768, LEFT), 1).state;
    expect(choices(shown)?.map((s) => s.id)).toEqual([1, 2, 3]);
    const probed = onProbe(shown, layout(0, W + 300, H, LEFT, RIGHT));
    expect(probed.notice).toBeNull();
    expect(choices(probed.state)?.map((s) => s.id)).toEqual([1, 2]);
    expect(requestFor(probed.state, 3)).toBeNull();
  });

  it("says when the desktop shrank to the one monitor shown", () => {
    const step = onLayout(showingRight(), layout(0, 800, 600, { ...RIGHT, id: 1, x: 0 }), null);
    expect(step.probe).toBe(true);
    const probed = onProbe(step.state, layout(0, 800, 600, { ...RIGHT, id: 1, x: 0 }));
    expect(probed.notice).toEqual({ key: "monitor_single" });
    expect(choices(probed.state)).toBeNull();
    // Said once: the next probe (the View menu opened) finds the same.
    expect(onProbe(probed.state, layout(0, 800, 600, { ...RIGHT, id: 1, x: 0 })).notice).toBeNull();
    // A monitor plugged in again: offered (the agent did not need to say anything).
    const again = onProbe(probed.state, layout(0, 1600, 600, { ...RIGHT, id: 1, x: 0 }, { ...RIGHT, id: 2, x: 800 }));
    expect(choices(again.state)?.map((s) => s.id)).toEqual([1, 2]);
    expect(selected(again.state)).toBe(1);
  });

  it("keeps one monitor shown alone choosable back to the whole desktop", () => {
    // Monitor 2 shown; monitor 1 removed, the screen keeps its size: the one monitor
    // left is still shown alone, and the whole desktop stays a choice.
    const step = onLayout(showingRight(), layout(0, 800, 600, { ...RIGHT, id: 1, x: 0 }), null);
    const probed = onProbe(step.state, layout(0, W, H, { ...RIGHT, id: 1 }));
    expect(probed.notice).toBeNull();
    expect(choices(probed.state)?.map((s) => s.id)).toEqual([1]);
    expect(selected(probed.state)).toBe(1);
    expect(requestFor(probed.state, 0)).toEqual([W, H, 0]);
  });

  it("a refusal changes nothing, says so for a monitor, and probes", () => {
    const two = showingRight();
    const refused: Layout = { ...rightAlone(1), status: 1 };
    expect(onLayout(two, refused, 1)).toEqual({ state: two, notice: { key: "monitor_refused", n: 1 }, probe: true });
    expect(onLayout(two, refused, 0)).toEqual({ state: two, notice: null, probe: true });
  });

  it("offers nothing for a single-monitor desktop", () => {
    const one = onLayout(NO_MONITORS, layout(0, 1024, 768, LEFT), null);
    expect(one).toMatchObject({ notice: null, probe: false });
    expect(choices(one.state)).toBeNull();
    expect(requestFor(NO_MONITORS, 0)).toBeNull();
    const none = onLayout(NO_MONITORS, layout(0, 1024, 768, { id: 0, x: 0, y: 0, w: 1024, h: 768 }), null);
    expect(none.state.monitors).toEqual([]);
    expect(choices(none.state)).toBeNull();
  });
});

/** A scripted RFB server: answers, in chunks of ``chunk`` bytes, and the client's bytes. */
function server(answers: Uint8Array[], chunk: number): { stream: { read(): Promise<Uint8Array | null>; write(d: Uint8Array): Promise<void> }; written: number[][] } {
  const all = new Uint8Array(answers.reduce((n, a) => n + a.length, 0));
  let at = 0;
  for (const a of answers) {
    all.set(a, at);
    at += a.length;
  }
  let pos = 0;
  const written: number[][] = [];
  return {
    written,
    stream: {
      async read() {
        if (pos >= all.length) return null;
        const out = all.slice(pos, pos + chunk);
        pos += chunk;
        return out;
      },
      async write(d: Uint8Array) {
        written.push([...d]);
      },
    },
  };
}

function u16(n: number): number[] {
  return [n >> 8, n & 255];
}
function u32(n: number): number[] {
  return [n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255];
}

describe("readLayout", () => {
  const handshake = [
    new TextEncoder().encode("RFB 003.008\n"),
    Uint8Array.of(1, 1), // security types: None
    Uint8Array.of(...u32(0)),
    Uint8Array.of(...u16(W), ...u16(H), 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, ...u32(4), ...new TextEncoder().encode("name")),
  ];

  it("reads the first screen list, past a bell and clipboard text", async () => {
    for (const chunk of [1, 7, 4096]) {
      const ext = Uint8Array.of(0, 0, ...u16(1), ...u16(0), ...u16(0), ...u16(W), ...u16(H), ...u32(-308 >>> 0));
      const s = server([...handshake, Uint8Array.of(2), Uint8Array.of(3, 0, 0, 0, ...u32(3), 97, 98, 99), ext, body([1, 0, 0, 1024, 768], [2, 1024, 0, 800, 600])], chunk);
      const got = await readLayout(s.stream);
      expect(got).toEqual({ reason: 0, status: 0, width: W, height: H, screens: [LEFT, RIGHT] });
      expect(s.written).toEqual([
        [...new TextEncoder().encode("RFB 003.008\n")],
        [1], // security None
        [1], // shared
        [2, 0, 0, 1, ...u32(-308 >>> 0)], // SetEncodings: ExtendedDesktopSize alone
        [3, 0, 0, 0, 0, 0, 0, 1, 0, 1], // one pixel, in full
      ]);
    }
  });

  it("skips a raw pixel and fails on what it does not know", async () => {
    const raw = Uint8Array.of(0, 0, ...u16(1), 0, 0, 0, 0, ...u16(1), ...u16(1), ...u32(0), 1, 2, 3, 4);
    const ext = Uint8Array.of(0, 0, ...u16(1), ...u16(0), ...u16(0), ...u16(1024), ...u16(768), ...u32(-308 >>> 0));
    const ok = server([...handshake, raw, ext, body([1, 0, 0, 1024, 768])], 5);
    expect((await readLayout(ok.stream)).screens).toEqual([LEFT]);
    await expect(readLayout(server([...handshake, Uint8Array.of(77)], 64).stream)).rejects.toThrow("unexpected message 77");
    await expect(readLayout(server([new TextEncoder().encode("HTTP/1.1 200")], 64).stream)).rejects.toThrow();
    await expect(readLayout(server(handshake.slice(0, 1), 64).stream)).rejects.toThrow("ended");
  });
});
