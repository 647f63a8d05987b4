from django_durable import ParentResult, child, parent_task, sequential_tasks, task


def test_simple(executor):
    @task(id="t1", timeout=5)
    def t1(ctx, input):
        return {"hello": input["name"]}

    h = t1.enqueue({"name": "world"})
    s = h.wait(timeout=10)
    assert s.status == "completed", s.error
    assert s.output == {"hello": "world"}


def test_parent(executor):
    @task(id="c", timeout=5)
    def c(ctx, input):
        return input * 2

    def fin(ctx, result):
        return sum(ch.output for ch in result.children) + result.output

    @parent_task(id="p", timeout=5, finalize=fin)
    def p(ctx, input):
        return ParentResult(output=100, children=[child(c, i) for i in range(5)])

    s = p.enqueue().wait(timeout=10)
    assert s.status == "completed", s.error
    assert s.output == 120


def test_sequence(executor):
    @task(id="inc", timeout=5)
    def inc(ctx, input):
        return input + 1

    seq = sequential_tasks("seq", [inc, inc, inc])
    s = seq.enqueue(1).wait(timeout=10)
    assert s.status == "completed", s.error
    assert s.output == 4
