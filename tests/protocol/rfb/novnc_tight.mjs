// Decodes Tight rectangles with noVNC's own TightDecoder (console/node_modules/@novnc/novnc)
// for tests/protocol/rfb/test_encoders_novnc.py.
//
//   node novnc_tight.mjs NOVNC_DIR WIDTH HEIGHT < rects > framebuffer
//
// stdin: rectangles, each x, y, w, h (u16, big-endian), payload length (u32), payload.
// stdout: the framebuffer as RGBA bytes, then a JSON line of the JPEG rectangles.
import path from "node:path";
import { pathToFileURL } from "node:url";

const [novnc, width, height] = [process.argv[2], +process.argv[3], +process.argv[4]];
globalThis.window = globalThis; // noVNC's logging looks at window.console
const { default: TightDecoder } = await import(
  pathToFileURL(path.join(novnc, "core/decoders/tight.js")).href
);

class Sock {
  constructor(buf) { this.b = buf; this.i = 0; }
  rQwait(msg, num) { return this.b.length - this.i < num; }
  rQpeek8() { return this.b[this.i]; }
  rQshift8() { return this.b[this.i++]; }
  rQskipBytes(n) { this.i += n; }
  rQshiftBytes(n, copy = true) {
    const r = this.b.subarray(this.i, this.i + n);
    this.i += n;
    return copy ? r.slice() : r;
  }
  rQshiftTo(target, n) { target.set(this.b.subarray(this.i, this.i + n)); this.i += n; }
}

const fb = new Uint8Array(width * height * 4);
const jpegs = [];
const display = {
  fillRect(x, y, w, h, pixel) {
    for (let yy = y; yy < y + h; yy++) {
      for (let xx = x; xx < x + w; xx++) {
        const o = (yy * width + xx) * 4;
        fb[o] = pixel[0]; fb[o + 1] = pixel[1]; fb[o + 2] = pixel[2]; fb[o + 3] = 255;
      }
    }
  },
  blitImage(x, y, w, h, arr, offset) {
    for (let yy = 0; yy < h; yy++) {
      const src = offset + yy * w * 4;
      fb.set(arr.subarray(src, src + w * 4), ((y + yy) * width + x) * 4);
    }
  },
  imageRect(x, y, w, h, mime, data) { jpegs.push([x, y, w, h, data.length]); },
};

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const input = Buffer.concat(chunks);
const decoder = new TightDecoder();
let i = 0;
while (i < input.length) {
  const x = input.readUInt16BE(i), y = input.readUInt16BE(i + 2);
  const w = input.readUInt16BE(i + 4), h = input.readUInt16BE(i + 6);
  const n = input.readUInt32BE(i + 8);
  const sock = new Sock(new Uint8Array(input.subarray(i + 12, i + 12 + n)));
  if (!decoder.decodeRect(x, y, w, h, sock, display, 24)) {
    throw new Error(`rectangle ${x},${y} ${w}x${h} incomplete`);
  }
  if (sock.i !== n) throw new Error(`rectangle ${x},${y}: ${n - sock.i} bytes left over`);
  i += 12 + n;
}
process.stdout.write(fb);
process.stdout.write("\n" + JSON.stringify(jpegs) + "\n");
