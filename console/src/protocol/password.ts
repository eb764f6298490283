// The agent's one-time password: normalisation of what the technician types, as
// src/enkaku/protocol/password.py does it (docs/protocol/handshake.md#password).

import { ProtocolError } from "./errors";

/** Crockford base32, lowercase: 0-9 and a-z without i, l, o, u. */
export const ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz";
export const PASSWORD_LENGTH = 8;

// NFKC folds full-width forms; these are the dashes it leaves alone, including the
// Japanese long-vowel mark an IME produces for "-".
const SEPARATORS = new Set("-._‐‑‒–—―−ー・");
const LOOK_ALIKES: Record<string, string> = { o: "0", i: "1", l: "1", u: "v" };
const VALID = new Set(ALPHABET);
// Python's str.isspace(): \s plus the information separators U+001C..U+001F.
const SPACE = /^[\s\x1c-\x1f]$/u;

/** Canonical bytes of a typed password (CPace's PRS); throws ProtocolError naming the
 * position (never the character) when it cannot be one. */
export function normalizePassword(text: string): Uint8Array {
  const out: string[] = [];
  let position = 0;
  for (const original of text) {
    position += 1;
    for (let ch of original.normalize("NFKC").toLowerCase()) {
      if (SPACE.test(ch) || SEPARATORS.has(ch)) continue;
      ch = LOOK_ALIKES[ch] ?? ch;
      if (!VALID.has(ch)) {
        throw new ProtocolError(
          `character ${position} of the password is not a letter or digit used in passwords`,
        );
      }
      out.push(ch);
    }
  }
  if (out.length !== PASSWORD_LENGTH) {
    throw new ProtocolError(
      `a password has ${PASSWORD_LENGTH} letters and digits, this one has ${out.length}`,
    );
  }
  return new TextEncoder().encode(out.join(""));
}
