namespace Fusion.Dsl.Algebra;

/// <summary>A child module under its attribute name, as PyTorch's <c>named_children()</c> yields it.</summary>
/// <param name="Name">The attribute name (<c>"conv1"</c>, or <c>"0"</c> in a Sequential).</param>
/// <param name="Module">The child.</param>
public readonly record struct NamedModule(string Name, Module Module);
