/// The one table of graph operations: a call's arguments bind the way PyTorch binds them (positional, keyword, default,
/// varargs sizes), mistakes are named, in-place calls are recognised from their flag, and anything outside the table is
/// opaque rather than an error.
module Fusion.Dsl.Tests.Graphs.GraphOpsTests

open System.Collections.Generic
open System.Text.Json
open Expecto
open Fusion.Dsl.Graphs

let private r (name: string) = GraphArg.Ref name
let private c (v: objnull) = GraphArg.Const v
let private call op name target (args: GraphArg list) (kwargs: (string * GraphArg) list) =
    GraphNode(op, name, target, args, [ for k, v in kwargs -> KeyValuePair(k, v) ])
/// Binds with references resolved to their own names (a stand-in for a tensor).
let private bind (node: GraphNode) =
    let op = GraphOps.Of node |> nonNull
    let rec resolve (a: GraphArg) : objnull =
        match a with
        | :? RefArg as x -> box x.Node
        | :? ConstArg as k -> k.Value
        | :? ListArg as l -> box [| for i in l.Items -> resolve i |]
        | _ -> failwith "unknown argument"
    op.Bind(node, resolve)

[<Tests>]
let tests =
    testList "Graphs.GraphOps" [
        test "positional, keyword and default arguments bind to PyTorch's parameter names" {
            let a = bind (call NodeOp.CallFunction "f" "flatten" [ r "x" ] [ "end_dim", c 2L ])
            Expect.equal (a.Value "input") (box "x") "input by position"
            Expect.equal (a.Long "start_dim") 0L "start_dim defaults to torch's 0"
            Expect.equal (a.Long "end_dim") 2L "end_dim by keyword"
            Expect.isFalse (a.Has "start_dim") "a default is not given"
        }
        test "x.view(2, -1), x.view((2, -1)) and x.view(-1) give the same kind of size list" {
            let sizes args = (bind (call NodeOp.CallMethod "v" "view" (r "x" :: args) [])).IntList "shape"
            Expect.equal (sizes [ c 2L; c -1L ]) [| 2; -1 |] "varargs"
            Expect.equal (sizes [ GraphArg.List(c 2L, c -1L) ]) [| 2; -1 |] "a tuple"
            Expect.equal (sizes [ c -1L ]) [| -1 |] "one size"
        }
        test "too many arguments, an unknown keyword, a repeated one and a missing one are refused by name" {
            let refused node (words: string) =
                let e = Fusion.Dsl.Tests.Support.throwsOf<GraphCallException> (fun () -> bind node |> ignore)
                Expect.stringContains e.Message words "names the problem"
                Expect.stringContains e.Message $"'{node.Name}'" "names the node"
            refused (call NodeOp.CallFunction "a" "add" [ r "x"; r "y"; r "z" ] []) "at most 2"
            refused (call NodeOp.CallFunction "f" "flatten" [ r "x" ] [ "start", c 1L ]) "'start'"
            refused (call NodeOp.CallFunction "f" "flatten" [ r "x"; c 1L ] [ "start_dim", c 1L ]) "twice"
            refused (call NodeOp.CallMethod "u" "unsqueeze" [ r "x" ] []) "'dim'"
        }
        test "a value of the wrong kind is named with what was expected" {
            let a = bind (call NodeOp.CallMethod "u" "unsqueeze" [ r "x"; c "a" ] [])
            let e = Fusion.Dsl.Tests.Support.throwsOf<GraphCallException> (fun () -> a.Long "dim" |> ignore)
            Expect.stringContains e.Message "'dim' of unsqueeze must be an integer, got String a" "what and why"
        }
        test "an in-place call is one whose flag is the constant True, by position or keyword" {
            Expect.isTrue (GraphOps.IsInplace(call NodeOp.CallFunction "r" "relu" [ r "x"; c true ] [])) "positional"
            Expect.isTrue (GraphOps.IsInplace(call NodeOp.CallFunction "r" "relu" [ r "x" ] [ "inplace", c true ])) "keyword"
            Expect.isFalse (GraphOps.IsInplace(call NodeOp.CallFunction "r" "relu" [ r "x" ] [])) "default False"
            Expect.isFalse (GraphOps.IsInplace(call NodeOp.CallMethod "r" "relu" [ r "x" ] [])) "the method has no flag"
        }
        test "a call outside the table is opaque: no operation, and a graph holding it is valid" {
            let node = call NodeOp.CallFunction "g" "torch.nn.functional.gelu" [ r "x" ] [ "approximate", c "tanh" ]
            Expect.isNull (GraphOps.Of node) "not in the table"
            let g = Graph([ GraphNode(NodeOp.Placeholder, "x"); node; GraphNode(NodeOp.Output, "output", args = [ r "g" ]) ])
            Expect.equal g.Nodes.Length 3 "kept"
        }
        test "the schema lists every operation with its parameters, methods without self" {
            use doc = JsonDocument.Parse(GraphOps.SchemaJson())
            let names (kind: string) = [ for p in doc.RootElement.GetProperty(kind).EnumerateObject() -> p.Name ]
            Expect.equal (names "functions" @ names "methods" |> List.length) GraphOps.Operations.Count "every operation"
            let flatten = [ for p in doc.RootElement.GetProperty("methods").GetProperty("flatten").EnumerateArray() -> p.GetString() ]
            Expect.equal flatten [ "start_dim"; "end_dim" ] "method parameters after self"
        }
    ]
