// noVNC ships JavaScript without type declarations; screen.ts states the part of RFB it
// uses (RfbView) and casts to it.
declare module "@novnc/novnc" {
  const RFB: unknown;
  export default RFB;
}
