// The monitor picker's pure part: the agent's screen list (RFB ExtendedDesktopSize) and
// what the picker shows.
//
// The agent lists one screen per monitor of the customer's desktop (ids from 1, left to
// right). The viewer shows one monitor alone by asking for a layout of that one screen
// (SetDesktopSize: its id, at 0, 0, its size) and the whole desktop again by asking for
// one screen of the desktop's size (docs/performance.md, "Monitors"). While one monitor
// is shown the agent lists only that one, so the picker keeps the whole desktop's list
// it saw last.

/** One screen of an ExtendedDesktopSize layout. */
export interface RemoteScreen {
  id: number;
  x: number;
  y: number;
  w: number;
  h: number;
}

/** An ExtendedDesktopSize update: reason (0 the server, 1 our request), status (0 OK). */
export interface Layout {
  reason: number;
  status: number;
  width: number;
  height: number;
  screens: RemoteScreen[];
}

/** What the picker offers: the desktop's monitors (none: no picker) and the one shown
 * (0: the whole desktop). */
export interface MonitorState {
  width: number;
  height: number;
  monitors: RemoteScreen[];
  shown: number;
}

export const NO_MONITORS: MonitorState = { width: 0, height: 0, monitors: [], shown: 0 };

/** The screens of an ExtendedDesktopSize body (count u8, 3 padding, 16 bytes a screen). */
export function parseScreens(body: Uint8Array): RemoteScreen[] {
  const view = new DataView(body.buffer, body.byteOffset, body.byteLength);
  const count = body[0] ?? 0;
  const screens: RemoteScreen[] = [];
  for (let i = 0; i < count && 4 + 16 * (i + 1) <= body.byteLength; i++) {
    const at = 4 + 16 * i;
    screens.push({
      id: view.getUint32(at),
      x: view.getUint16(at + 4),
      y: view.getUint16(at + 6),
      w: view.getUint16(at + 8),
      h: view.getUint16(at + 10),
    });
  }
  return screens;
}

/** The picker after ``layout`` arrived. */
export function nextState(state: MonitorState, layout: Layout): MonitorState {
  if (layout.reason === 1 && layout.status !== 0) return state; // refused: nothing changed
  const { screens } = layout;
  if (screens.length > 1) {
    return { width: layout.width, height: layout.height, monitors: screens, shown: 0 };
  }
  const one = screens[0];
  const known = one !== undefined && state.monitors.some((s) => s.id === one.id && s.w === one.w && s.h === one.h);
  if (known && layout.width === one.w && layout.height === one.h) {
    return { ...state, shown: one.id }; // one monitor of the desktop we know, alone
  }
  return NO_MONITORS; // a single-monitor desktop (or one we never saw whole): no choice
}

/** The SetDesktopSize that shows monitor ``id`` (0: the whole desktop): [w, h, id]. */
export function requestFor(state: MonitorState, id: number): [number, number, number] | null {
  if (id === 0) return state.width > 0 ? [state.width, state.height, 0] : null;
  const s = state.monitors.find((m) => m.id === id);
  return s ? [s.w, s.h, s.id] : null;
}
