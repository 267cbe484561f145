"""SCBench tasks: one module per task (a `TaskSpec`), run by two SGLang frontend programs.

    from programs import get_program, get_task
    from runtime.backend import connect
    conn = connect(url)                               # the server's model, with its chat template
    program = get_program("kv", "multi-turn")        # an @sgl.function, bound to the task
    state = program.run(sample=sample, backend=conn.backend, chat=conn.chat)
    state.ret_value                                   # one dict per turn: prediction, tokens, latency

`chat=True` renders the prompts with the chat template `connect` found; pass
`chat=runtime.chat_template.ChatFormat(tokenizer)` for another backend, or `chat=False` for plain
text. `prompts="fixed"` corrects SCBench's prompt quirks (`programs.prompts`).

Adding a task: one module in `programs/` (or one named in `SCBENCH_PLUGINS`) that calls
`register_task(TaskSpec(...))`; see `programs.spec.TaskSpec` for what it declares. Importing this
package, the registry or a task module imports no SGLang; `get_program` does.
"""

from programs.registry import TASKS, all_tasks, get_program, get_task, register_task, task_names
from programs.spec import TaskSpec

__all__ = ["TASKS", "TaskSpec", "all_tasks", "get_program", "get_task", "register_task", "task_names"]
