"""SCBench tasks as SGLang frontend programs.

    from programs import get_program, get_task
    program = get_program("kv", "multi-turn")        # an @sgl.function, bound to the task
    state = program.run(sample=sample, backend=sgl.RuntimeEndpoint(url))
    state.ret_value                                   # one dict per turn: prediction, tokens, latency
"""

from programs.registry import TASKS, get_program, get_task, register_task, task_names

__all__ = ["TASKS", "get_program", "get_task", "register_task", "task_names"]
