// "Type this text" (stream kind `type_text`, session grant `control`): the agent types
// the text on the customer's keyboard, for login screens and password fields no
// clipboard reaches. Mirrors src/enkaku/technician/typetext.py; wire format in
// docs/protocol/services.md#typing-a-text:
//   technician → agent: the text (UTF-8), EOF;  agent → technician: {"ok":true,"typed":N}\n, EOF
// The text is checked here with the agent's rules first; it is never logged.

import {
  type ServiceSession,
  type ServiceStream,
  concat,
  isSessionEnded,
  obtainGrant,
  openWithGrant,
  parseObject,
  quietReset,
  resetReason,
  utf8,
} from "./common";

export const TYPE_TEXT_KIND = "type_text";
export const TYPE_TEXT_ACTION = "control";
/** The longest text, in characters (code points). */
export const MAX_CHARS = 4096;

/** Why the text was not (wholly) typed: the agent's RESET reason (`bad_text`,
 * `text_too_long`, `control_paused`, `no_display`, `input_failed`,
 * `consent_required`, `unsupported_stream`), `text_empty`, `bad_answer`, or
 * `interrupted` (the session ended). */
export class TypeTextError extends Error {
  readonly reason: string;
  constructor(reason: string) {
    super(`text not typed: ${reason}`);
    this.name = "TypeTextError";
    this.reason = reason;
  }
}

/** Throw TypeTextError unless the agent would accept `text`: 1..4096 characters, no
 * control character but tab and line breaks. */
export function checkText(text: string): void {
  if (text.length === 0) throw new TypeTextError("text_empty");
  let n = 0;
  for (const ch of text) {
    n += 1;
    if (ch !== "\t" && ch !== "\n" && ch !== "\r" && /[\p{Cc}\p{Cs}]/u.test(ch)) throw new TypeTextError("bad_text");
  }
  if (n > MAX_CHARS) throw new TypeTextError("text_too_long");
}

/** Send `text` on an open `type_text` stream; the number of keys typed (`\r\n` is one). */
export async function sendText(stream: ServiceStream, text: string): Promise<number> {
  checkText(text);
  try {
    await stream.write(utf8(text));
    await stream.writeEof();
  } catch (err) {
    throw asTypeTextError(err);
  }
  const parts: Uint8Array[] = [];
  let size = 0;
  try {
    for (let chunk = await stream.read(); chunk !== null; chunk = await stream.read()) {
      parts.push(chunk);
      size += chunk.length;
      if (size > 256) {
        await quietReset(stream, "bad_answer");
        throw new TypeTextError("bad_answer");
      }
    }
  } catch (err) {
    throw asTypeTextError(err);
  }
  const obj = parseObject(concat(parts, size));
  const typed = obj !== null && obj.ok === true ? obj.typed : undefined;
  if (typeof typed !== "number" || !Number.isInteger(typed) || typed < 0) throw new TypeTextError("bad_answer");
  return typed;
}

function asTypeTextError(err: unknown): unknown {
  if (err instanceof TypeTextError) return err;
  const reason = resetReason(err);
  if (reason !== null) return new TypeTextError(reason);
  if (isSessionEnded(err)) return new TypeTextError("interrupted");
  return err;
}

export interface TypeTextOptions {
  purpose?: string;
  onAsking?: (action: string) => void;
}

/** Type `text` on the customer's keyboard: asks for `control` unless in force. Resolves
 * with the number of keys typed; throws TypeTextError (checked before anything is
 * asked; `control_paused` at once while the session's status says so), ConsentRefused,
 * or the channel's SessionEnded. */
export async function typeText(session: ServiceSession, text: string, opts: TypeTextOptions = {}): Promise<number> {
  checkText(text);
  // While paused the agent refuses the stream (consent_required): say why instead.
  if (session.status?.control_paused) throw new TypeTextError("control_paused");
  const grant = await obtainGrant(session, TYPE_TEXT_ACTION, {}, opts.purpose, opts.onAsking);
  const stream = await openWithGrant(session, TYPE_TEXT_KIND, {}, grant);
  return sendText(stream, text);
}
