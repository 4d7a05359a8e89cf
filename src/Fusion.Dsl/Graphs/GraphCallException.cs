namespace Fusion.Dsl.Graphs;

/// <summary>A graph node's call does not fit its operation: wrong number of arguments, an unknown keyword, a wrong kind of value.</summary>
public sealed class GraphCallException : Exception
{
    /// <summary>Creates the exception for <paramref name="node"/>.</summary>
    public GraphCallException(GraphNode node, string problem)
        : base($"graph node '{node?.Name}': {problem}")
    {
        ArgumentNullException.ThrowIfNull(node);
        Node = node;
        Problem = problem;
    }

    /// <summary>The node.</summary>
    public GraphNode Node { get; }

    /// <summary>What is wrong, without the node's name.</summary>
    public string Problem { get; }
}
