/// The graph's own queries: the readers of a value and the inputs of a node, as torch.fx's `node.users` and
/// `node.all_input_nodes` define them.
module Fusion.Dsl.Tests.Graphs.GraphTests

open System.Collections.Generic
open Expecto
open Fusion.Dsl.Graphs

let private r (name: string) = GraphArg.Ref name

/// x -> a = relu(x); b = add(a, a); c = cat([a, x], dim=1) -> output(b + c)
let private graph =
    Graph(
        [ GraphNode(NodeOp.Placeholder, "x")
          GraphNode(NodeOp.CallFunction, "a", "relu", [ r "x" ])
          GraphNode(NodeOp.CallFunction, "b", "add", [ r "a"; r "a" ])
          GraphNode(NodeOp.CallFunction, "c", "cat", [ GraphArg.List(r "a", r "x") ], [ KeyValuePair("dim", GraphArg.Const(box 1L)) ])
          GraphNode(NodeOp.CallFunction, "d", "add", [ r "b" ], [ KeyValuePair("other", r "c") ])
          GraphNode(NodeOp.Output, "output", args = [ r "d" ]) ])

let private names (nodes: GraphNode seq) = [ for n in nodes -> n.Name ]

[<Tests>]
let tests =
    testList "Graphs.Graph" [
        test "the readers of a value are listed once each, in execution order" {
            Expect.equal (names (graph.Consumers "a")) [ "b"; "c" ] "b reads a twice but is one reader; c reads it inside a list"
            Expect.equal (names (graph.Consumers "x")) [ "a"; "c" ] "readers through positional and list arguments"
            Expect.equal (names (graph.Consumers "c")) [ "d" ] "a keyword argument is a read"
            Expect.equal (names (graph.Consumers "output")) [] "nothing reads the output"
            Expect.equal (names (graph.Consumers "no-such-node")) [] "an unknown name has no readers"
        }
        test "a node's inputs are its positional references, then its keyword references, with repeats" {
            let node name = graph.Nodes |> Seq.find (fun n -> n.Name = name)
            Expect.equal (List.ofSeq (node "b").Inputs) [ "a"; "a" ] "repeats kept"
            Expect.equal (List.ofSeq (node "c").Inputs) [ "a"; "x" ] "inside a list"
            Expect.equal (List.ofSeq (node "d").Inputs) [ "b"; "c" ] "positional, then keyword"
        }
    ]
