// The lossless setting's change to the encodings noVNC asks for (see screen.ts).

/** noVNC's pseudoEncodingQualityLevel0 .. pseudoEncodingQualityLevel9. */
export const QUALITY_LEVELS = { first: -32, last: -23 } as const;

/** ``encodings`` without the JPEG quality levels: an agent offered none sends every
 * rectangle losslessly (docs/protocol/rfb.md, Tight). Order is kept. */
export function withoutJpeg(encodings: readonly number[]): number[] {
  return encodings.filter((e) => e < QUALITY_LEVELS.first || e > QUALITY_LEVELS.last);
}
