// The monitor picker's pure part: the screen list as the agent sends it, and what the
// picker offers after each layout (docs/performance.md, "Monitors").

import { describe, expect, it } from "vitest";
import { NO_MONITORS, nextState, parseScreens, requestFor, type Layout } from "../../src/ui/monitors";

function body(...screens: [number, number, number, number, number][]): Uint8Array {
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
const desktop: Layout = { reason: 0, status: 0, width: 1824, height: 768, screens: [LEFT, RIGHT] };

describe("monitors", () => {
  it("reads the screen list", () => {
    expect(parseScreens(body([1, 0, 0, 1024, 768], [2, 1024, 0, 800, 600]))).toEqual([LEFT, RIGHT]);
    expect(parseScreens(body())).toEqual([]);
  });

  it("offers the desktop's monitors and follows the one shown", () => {
    const all = nextState(NO_MONITORS, desktop);
    expect(all).toEqual({ width: 1824, height: 768, monitors: [LEFT, RIGHT], shown: 0 });
    expect(requestFor(all, 2)).toEqual([800, 600, 2]);
    expect(requestFor(all, 0)).toEqual([1824, 768, 0]);
    expect(requestFor(all, 7)).toBeNull();
    const right: Layout = { reason: 1, status: 0, width: 800, height: 600, screens: [{ ...RIGHT, x: 0 }] };
    const two = nextState(all, right);
    expect(two.shown).toBe(2);
    expect(two.monitors).toEqual([LEFT, RIGHT]); // the whole desktop's list is kept
    const refused: Layout = { reason: 1, status: 1, width: 800, height: 600, screens: [{ ...RIGHT, x: 0 }] };
    expect(nextState(two, refused)).toBe(two);
    expect(nextState(two, desktop).shown).toBe(0);
  });

  it("offers nothing for a single-monitor desktop", () => {
    const one: Layout = { reason: 0, status: 0, width: 1024, height: 768, screens: [LEFT] };
    expect(nextState(NO_MONITORS, one)).toEqual(NO_MONITORS);
    expect(requestFor(NO_MONITORS, 0)).toBeNull();
  });
});
