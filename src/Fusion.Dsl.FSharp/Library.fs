/// Placeholder module replaced by the F# layer.
namespace Fusion.Dsl.FSharp
