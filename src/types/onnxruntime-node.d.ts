// onnxruntime-node 1.16 ships no type declarations of its own; its API is onnxruntime-common's,
// which it re-exports (InferenceSession, Tensor, env).
declare module 'onnxruntime-node' {
  export * from 'onnxruntime-common';
}
