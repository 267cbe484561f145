# Vendored from microsoft/MInference, scbench/eval_utils.py, commit
# fb56c917f618e8645f1cfc37535afd7424d78f0d.
# Copyright (c) Microsoft Corporation. Licensed under the MIT License.
#
# Changed: only the four prompt-template dicts (`multiturn_templates`, `multiturn_templates_scdq`,
# `multiturn_follow_up_templates`, `multiturn_follow_up_templates_in_chat_tempate`) and the two
# functions that build prompts from them (`create_scdq_prompt`, `create_multiturn_prompt`) are kept;
# the module's other imports (jieba, torch, rouge, transformers' SinkCache) are dropped as these
# need none of them. Everything kept is verbatim.
# Copyright (c) 2024-2025 Microsoft
# Licensed under The MIT License [see LICENSE for details]

from __future__ import annotations

import re

multiturn_templates = {
    "scbench_passkey": "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information.\n\n{context}\n\n{input}",  # noqa
    "scbench_kv": "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}",  # noqa
    "scbench_kv_hard": "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}\n\n{input}",  # noqa
    "scbench_kv_compressible": "Extract the value corresponding to the specified key in the following passage.\n\n{context}\n\n{input}",  # noqa
    "scbench_choice_eng": "Read the book and answer the question.\n\n{context}\n\nQuestion: {question}\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe the correct answer is",  # noqa
    "scbench_qa_eng": "Read the book and answer the question. Be very concise in your answer.\n\n{context}\n\nQuestion: {question}\nAnswer:",  # noqa
    "scbench_qa_chn": "阅读以下书籍然后回答问题。\n\n{context}\n\n问题：{question}\n答案：",  # noqa
    "scbench_mf": "{prefix}\n\n{context}\n\n{input}",
    "scbench_repoqa": "Based on the function description and code context, please retrieve and repeat the exact described function from the code context in a code block wrapped by ```:\n\n{context}\n\n{input}",
    "scbench_summary": "{context}\n\n{input}",
    "scbench_vt": "{context}\n\n{input}",
    "scbench_many_shot": "{context}\n\n{input}",
    "scbench_summary_with_needles": "{context}\n\n{input}",
    "scbench_repoqa_and_kv": "{context}\n\n{input}",
    "scbench_hashhop": "{context}\n\n{input}",
    "scbench_prefix_suffix": "{context}\n\n{input}",
}

multiturn_templates_scdq = {
    "scbench_passkey": "There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. I will quiz you about the important information.\n\n{context}",  # noqa
    "scbench_kv": "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}",  # noqa
    "scbench_kv_hard": "Extract the value corresponding to the specified key in the JSON object below.\n\n{context}",  # noqa
    "scbench_kv_compressible": "Extract the value corresponding to the specified key in the following passage.\n\n{context}",  # noqa
    "scbench_choice_eng": (
        "Read the book and answer the question.\n\n{context}",
        "Question: {question}\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe the correct answer is",
    ),
    "scbench_qa_eng": (
        "Read the book and answer the question. Be very concise in your answer.\n\n{context}",
        "Question: {question}\nAnswer:",
    ),
    "scbench_qa_chn": ("阅读以下书籍然后回答问题。\n\n{context}", "问题：{question}\n答案："),
    "scbench_mf": "{prefix}\n\n{context}",
    "scbench_repoqa": "Based on the function description and code context, please retrieve and repeat the exact described function from the code context in a code block wrapped by ```:\n\n{context}",
    "scbench_summary": "{context}",
    "scbench_vt": "{context}",
    "scbench_many_shot": "{context}",
    "scbench_summary_with_needles": "{context}",
    "scbench_repoqa_and_kv": "{context}",
    "scbench_hashhop": "{context}",
    "scbench_prefix_suffix": "{context}",
}

multiturn_follow_up_templates = {
    "scbench_passkey": "{pre_ans}.\n\n{input}",  # noqa
    "scbench_kv": "{pre_ans}\n\n{input}",  # noqa
    "scbench_kv_hard": "{pre_ans}\n\n{input}",  # noqa
    "scbench_kv_compressible": "{pre_ans}\n\n{input}",  # noqa
    "scbench_choice_eng": "{pre_ans}\n\nQuestion: {question}\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe letter of the correct answer is",  # noqa
    "scbench_qa_eng": "{pre_ans}\n\nQuestion: {question}\nAnswer:",  # noqa
    "scbench_qa_chn": "{pre_ans}\n\n问题：{question}\n答案：",  # noqa
    "scbench_mf": "{pre_ans}\n\n{prefix}\n\n{input}",
    "scbench_repoqa": "{pre_ans}\n\n{input}",
    "scbench_summary": "{pre_ans}\n\n{input}",
    "scbench_vt": "{pre_ans}\n\n{input}",
    "scbench_many_shot": "{pre_ans}\n\n{input}",
    "scbench_summary_with_needles": "{pre_ans}\n\n{input}",
    "scbench_repoqa_and_kv": "{pre_ans}\n\n{input}",
    "scbench_hashhop": "{pre_ans}\n\n{input}",
    "scbench_prefix_suffix": "{pre_ans}\n\n{input}",
}

multiturn_follow_up_templates_in_chat_tempate = {
    "scbench_passkey": "{input}",  # noqa
    "scbench_kv": "{input}",  # noqa
    "scbench_kv_hard": "{input}",  # noqa
    "scbench_kv_compressible": "{input}",  # noqa
    "scbench_choice_eng": "Question: {question}\nA. {OPTION_A}\nB. {OPTION_B}\nC. {OPTION_C}\nD. {OPTION_D}\n\nThe the correct answer is",  # noqa
    "scbench_qa_eng": "Question: {question}\nAnswer:",  # noqa
    "scbench_qa_chn": "问题：{question}\n答案：",  # noqa
    "scbench_mf": "{prefix}\n\n{input}",
    "scbench_repoqa": "{input}",
    "scbench_summary": "{input}",
    "scbench_vt": "{input}",
    "scbench_many_shot": "{input}",
    "scbench_summary_with_needles": "{input}",
    "scbench_repoqa_and_kv": "{input}",
    "scbench_hashhop": "{input}",
    "scbench_prefix_suffix": "{input}",
}


def create_scdq_prompt(
    eg: dict, data_name: str, tok, use_chat_template, use_vllm=False
):
    template = multiturn_templates_scdq[data_name]
    query_template = multiturn_follow_up_templates_in_chat_tempate[data_name]

    special_delimiter = "[SEPSEPSEP]"

    if data_name == "scbench_choice_eng":
        context = eg["context"]
        context_prompt = template[0].format(context=context)
        query_prompts = [
            template[1].format(
                question=turn["input"],
                OPTION_A=turn["options"][0],
                OPTION_B=turn["options"][1],
                OPTION_C=turn["options"][2],
                OPTION_D=turn["options"][3],
            )
            for turn in eg["multi_turns"]
        ]

        if use_chat_template:
            context_prompt = tok.apply_chat_template(
                [{"role": "user", "content": context_prompt + special_delimiter}],
                add_generation_prompt=True,
                tokenize=False,
            )
            context_prompt = context_prompt.split(special_delimiter)[0]

            query_prompts = [
                tok.apply_chat_template(
                    [
                        {"role": "system", "content": ""},
                        {"role": "user", "content": special_delimiter + query_prompt},
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).split(special_delimiter)[1]
                for query_prompt in query_prompts
            ]

        prompts = [context_prompt] + query_prompts

        return {
            "prompts": prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
            "options": eg["multi_turns"][0]["options"],
        }

    elif data_name == "scbench_qa_eng":
        context = eg["context"]
        context_prompt = template[0].format(context=context)
        query_prompts = [
            template[1].format(
                question=turn["input"],
            )
            for turn in eg["multi_turns"]
        ]

        if use_chat_template:
            context_prompt = tok.apply_chat_template(
                [{"role": "user", "content": context_prompt + special_delimiter}],
                add_generation_prompt=True,
                tokenize=False,
            )
            context_prompt = context_prompt.split(special_delimiter)[0]

            query_prompts = [
                tok.apply_chat_template(
                    [
                        {"role": "system", "content": ""},
                        {"role": "user", "content": special_delimiter + query_prompt},
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).split(special_delimiter)[1]
                for query_prompt in query_prompts
            ]

        return {
            "prompts": [context_prompt] + query_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

    elif data_name == "scbench_qa_chn":
        context = eg["context"]
        context_prompt = template[0].format(context=context)
        query_prompts = [
            template[1].format(
                question=turn["input"],
            )
            for turn in eg["multi_turns"]
        ]

        if use_chat_template:
            context_prompt = tok.apply_chat_template(
                [{"role": "user", "content": context_prompt + special_delimiter}],
                add_generation_prompt=True,
                tokenize=False,
            )
            context_prompt = context_prompt.split(special_delimiter)[0]

            query_prompts = [
                tok.apply_chat_template(
                    [
                        {"role": "system", "content": ""},
                        {"role": "user", "content": special_delimiter + query_prompt},
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).split(special_delimiter)[1]
                for query_prompt in query_prompts
            ]

        return {
            "prompts": [context_prompt] + query_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

    elif data_name == "scbench_mf":
        context = eg["context"]
        context_prompt = template.format(
            prefix=eg["multi_turns"][0]["input"],
            context=context,
        )

        query_prompts = []
        for i in range(len(eg["multi_turns"])):
            target = re.findall(r"The .+ is", eg["multi_turns"][i]["input"])[0].lower()[
                :-3
            ]
            prefix = f"What is {target}?"
            query_prompts.append(
                query_template.format(
                    prefix=prefix,
                    input=eg["multi_turns"][i]["input"],
                )
            )

        if use_chat_template:
            context_prompt = tok.apply_chat_template(
                [{"role": "user", "content": context_prompt + special_delimiter}],
                add_generation_prompt=True,
                tokenize=False,
            )
            context_prompt = context_prompt.split(special_delimiter)[0]

            query_prompts = [
                tok.apply_chat_template(
                    [
                        {"role": "system", "content": ""},
                        {"role": "user", "content": special_delimiter + query_prompt},
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).split(special_delimiter)[1]
                for query_prompt in query_prompts
            ]

        return {
            "prompts": [context_prompt] + query_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

    elif data_name in [
        "scbench_repoqa",
        "scbench_summary",
        "scbench_passkey",
        "scbench_kv",
        "scbench_vt",
        "scbench_many_shot",
        "scbench_summary_with_needles",
        "scbench_repoqa_and_kv",
        "scbench_kv_hard",
        "scbench_hashhop",
        "scbench_prefix_suffix",
        "scbench_kv_compressible",
    ]:
        context = eg["context"] if "context" in eg else eg["input"]
        context_prompt = template.format(context=context)
        query_prompts = [turn["input"] for turn in eg["multi_turns"]]

        if use_chat_template:
            context_prompt = tok.apply_chat_template(
                [{"role": "user", "content": context_prompt + special_delimiter}],
                add_generation_prompt=True,
                tokenize=False,
            )
            context_prompt = context_prompt.split(special_delimiter)[0]

            query_prompts = [
                tok.apply_chat_template(
                    [
                        {"role": "system", "content": ""},
                        {"role": "user", "content": special_delimiter + query_prompt},
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).split(special_delimiter)[1]
                for query_prompt in query_prompts
            ]

        output = {
            "prompts": [context_prompt] + query_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

        if data_name in ["scbench_summary_with_needles", "scbench_repoqa_and_kv"]:
            output["task"] = [gt["task"] for gt in eg["multi_turns"]]

        return output


def create_multiturn_prompt(
    eg: dict,
    data_name: str,
    tok,
    use_chat_template,
    use_vllm=False,
    disable_golden_context=False,
) -> str:
    """
    Create prompt for a given example.

    Args:
        eg: example dict
        data_name: name of the dataset/task
    """

    template = multiturn_templates[data_name]
    follow_up_template = multiturn_follow_up_templates[data_name]

    if disable_golden_context:
        follow_up_template = multiturn_follow_up_templates_in_chat_tempate[data_name]

    if use_chat_template:
        sys_prompt_with_generation_prompt = tok.apply_chat_template(
            [{"role": "system", "content": ""}],
            add_generation_prompt=True if not disable_golden_context else False,
            tokenize=False,
        )

        follow_up_prompts_in_chat_template = (
            multiturn_follow_up_templates_in_chat_tempate[data_name]
        )

    if data_name == "scbench_choice_eng":
        first_turn = eg["multi_turns"][0]
        input_ = first_turn["input"]
        ans_ = first_turn["answer"]
        options = first_turn["options"]
        context = eg["context"]

        first_turn_prompt = template.format(
            context=context,
            question=input_,
            OPTION_A=options[0],
            OPTION_B=options[1],
            OPTION_C=options[2],
            OPTION_D=options[3],
        )

        follow_up_prompts = [
            follow_up_template.format(
                pre_ans=eg["multi_turns"][i - 1]["answer"]
                if not disable_golden_context
                else None,
                question=eg["multi_turns"][i]["input"],
                OPTION_A=eg["multi_turns"][i]["options"][0],
                OPTION_B=eg["multi_turns"][i]["options"][1],
                OPTION_C=eg["multi_turns"][i]["options"][2],
                OPTION_D=eg["multi_turns"][i]["options"][3],
            )
            for i in range(1, len(eg["multi_turns"]))
        ]

        if use_chat_template:
            first_turn_prompt = tok.apply_chat_template(
                [{"role": "user", "content": first_turn_prompt}],
                add_generation_prompt=True,
                tokenize=False,
            )

            follow_up_prompts = [
                tok.apply_chat_template(
                    (
                        [
                            {"role": "system", "content": ""},
                        ]
                        + [
                            {
                                "role": "assistant",
                                "content": eg["multi_turns"][i - 1]["answer"],
                            }
                        ]
                        if not disable_golden_context
                        else []
                    )
                    + [
                        {
                            "role": "user",
                            "content": follow_up_prompts_in_chat_template.format(
                                question=eg["multi_turns"][i]["input"],
                                OPTION_A=eg["multi_turns"][i]["options"][0],
                                OPTION_B=eg["multi_turns"][i]["options"][1],
                                OPTION_C=eg["multi_turns"][i]["options"][2],
                                OPTION_D=eg["multi_turns"][i]["options"][3],
                            ),
                        },
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).replace(sys_prompt_with_generation_prompt, "")
                for i in range(1, len(eg["multi_turns"]))
            ]

        prompts = [first_turn_prompt] + follow_up_prompts

        return {
            "prompts": prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
            "options": options,
        }

    elif data_name == "scbench_qa_eng":
        first_turn = eg["multi_turns"][0]
        input_ = first_turn["input"]
        context = eg["context"]

        first_turn_prompt = template.format(
            context=context,
            question=input_,
        )

        follow_up_prompts = [
            follow_up_template.format(
                pre_ans=eg["multi_turns"][i - 1]["answer"]
                if not disable_golden_context
                else None,
                question=eg["multi_turns"][i]["input"],
            )
            for i in range(1, len(eg["multi_turns"]))
        ]

        if use_chat_template:
            first_turn_prompt = tok.apply_chat_template(
                [{"role": "user", "content": first_turn_prompt}],
                add_generation_prompt=True,
                tokenize=False,
            )

            follow_up_prompts = [
                tok.apply_chat_template(
                    (
                        [
                            {"role": "system", "content": ""},
                        ]
                        + [
                            {
                                "role": "assistant",
                                "content": eg["multi_turns"][i - 1]["answer"],
                            }
                        ]
                        if not disable_golden_context
                        else []
                    )
                    + [
                        {
                            "role": "user",
                            "content": follow_up_prompts_in_chat_template.format(
                                question=eg["multi_turns"][i]["input"],
                            ),
                        },
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).replace(sys_prompt_with_generation_prompt, "")
                for i in range(1, len(eg["multi_turns"]))
            ]

        return {
            "prompts": [first_turn_prompt] + follow_up_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

    elif data_name == "scbench_qa_chn":
        first_turn = eg["multi_turns"][0]
        input_ = first_turn["input"]
        context = eg["context"]

        first_turn_prompt = template.format(
            context=context,
            question=input_,
        )

        follow_up_prompts = [
            follow_up_template.format(
                pre_ans=eg["multi_turns"][i - 1]["answer"]
                if not disable_golden_context
                else None,
                question=eg["multi_turns"][i]["input"],
            )
            for i in range(1, len(eg["multi_turns"]))
        ]

        if use_chat_template:
            first_turn_prompt = tok.apply_chat_template(
                [{"role": "user", "content": first_turn_prompt}],
                add_generation_prompt=True,
                tokenize=False,
            )

            follow_up_prompts = [
                tok.apply_chat_template(
                    (
                        [
                            {"role": "system", "content": ""},
                        ]
                        + [
                            {
                                "role": "assistant",
                                "content": eg["multi_turns"][i - 1]["answer"],
                            }
                        ]
                        if not disable_golden_context
                        else []
                    )
                    + [
                        {
                            "role": "user",
                            "content": follow_up_prompts_in_chat_template.format(
                                question=eg["multi_turns"][i]["input"],
                            ),
                        },
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).replace(sys_prompt_with_generation_prompt, "")
                for i in range(1, len(eg["multi_turns"]))
            ]

        return {
            "prompts": [first_turn_prompt] + follow_up_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

    elif data_name in [
        "scbench_kv",
        "scbench_vt",
        "scbench_passkey",
        "scbench_repoqa",
        "scbench_many_shot",
        "scbench_summary_with_needles",
        "scbench_repoqa_and_kv",
        "scbench_kv_hard",
        "scbench_hashhop",
        "scbench_prefix_suffix",
        "scbench_kv_compressible",
    ]:
        first_turn = eg["multi_turns"][0]
        input_ = first_turn["input"]
        context = eg["context"] if "context" in eg else eg["input"]

        first_turn_prompt = template.format(
            context=context,
            input=input_,
        )

        follow_up_prompts = [
            follow_up_template.format(
                pre_ans=eg["multi_turns"][i - 1]["answer"]
                if not disable_golden_context
                else None,
                input=eg["multi_turns"][i]["input"],
            )
            for i in range(1, len(eg["multi_turns"]))
        ]

        if use_chat_template:
            first_turn_prompt = tok.apply_chat_template(
                [{"role": "user", "content": first_turn_prompt}],
                add_generation_prompt=True,
                tokenize=False,
            )

            follow_up_prompts = [
                tok.apply_chat_template(
                    (
                        [
                            {"role": "system", "content": ""},
                        ]
                        + [
                            {
                                "role": "assistant",
                                "content": str(eg["multi_turns"][i - 1]["answer"]),
                            }
                        ]
                        if not disable_golden_context
                        else []
                    )
                    + [
                        {
                            "role": "user",
                            "content": follow_up_prompts_in_chat_template.format(
                                input=eg["multi_turns"][i]["input"],
                            ),
                        },
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).replace(sys_prompt_with_generation_prompt, "")
                for i in range(1, len(eg["multi_turns"]))
            ]

        output = {
            "prompts": [first_turn_prompt] + follow_up_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

        if data_name in ["scbench_summary_with_needles", "scbench_repoqa_and_kv"]:
            output["task"] = [gt["task"] for gt in eg["multi_turns"]]

        return output

    elif data_name == "scbench_mf":
        first_turn = eg["multi_turns"][0]
        input_ = first_turn["input"]
        context = eg["context"]

        target = re.findall(r"The .+ is", input_)[0].lower()[:-3]
        prefix = f"What is {target}?"

        first_turn_prompt = template.format(
            prefix=prefix,
            context=context,
            input=input_,
        )

        follow_up_prompts = []
        for i in range(1, len(eg["multi_turns"])):
            target = re.findall(r"The .+ is", eg["multi_turns"][i]["input"])[0].lower()[
                :-3
            ]
            prefix = f"What is {target}?"
            follow_up_prompts.append(
                follow_up_template.format(
                    pre_ans=eg["multi_turns"][i - 1]["answer"]
                    if not disable_golden_context
                    else None,
                    prefix=prefix,
                    input=eg["multi_turns"][i]["input"],
                )
            )

        if use_chat_template:
            first_turn_prompt = tok.apply_chat_template(
                [{"role": "user", "content": first_turn_prompt}],
                add_generation_prompt=True,
                tokenize=False,
            )

            follow_up_prompts = [
                tok.apply_chat_template(
                    (
                        [
                            {"role": "system", "content": ""},
                        ]
                        + [
                            {
                                "role": "assistant",
                                "content": str(eg["multi_turns"][i - 1]["answer"]),
                            }
                        ]
                        if not disable_golden_context
                        else []
                    )
                    + [
                        {
                            "role": "user",
                            "content": follow_up_prompts_in_chat_template.format(
                                prefix=prefix,
                                input=eg["multi_turns"][i]["input"],
                            ),
                        },
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).replace(sys_prompt_with_generation_prompt, "")
                for i in range(1, len(eg["multi_turns"]))
            ]

        return {
            "prompts": [first_turn_prompt] + follow_up_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }

    elif data_name == "scbench_summary":
        first_turn = eg["multi_turns"][0]
        input_ = first_turn["input"]
        context = eg["context"]

        first_turn_prompt = template.format(
            context=context,
            input=input_,
        )

        follow_up_prompts = [
            follow_up_template.format(
                pre_ans=eg["multi_turns"][i - 1]["answer"]
                if not disable_golden_context
                else None,
                input=eg["multi_turns"][i]["input"],
            )
            for i in range(1, len(eg["multi_turns"]))
        ]

        if use_chat_template:
            first_turn_prompt = tok.apply_chat_template(
                [{"role": "user", "content": first_turn_prompt}],
                add_generation_prompt=True,
                tokenize=False,
            )

            follow_up_prompts = [
                tok.apply_chat_template(
                    (
                        [
                            {"role": "system", "content": ""},
                        ]
                        + [
                            {
                                "role": "assistant",
                                "content": eg["multi_turns"][i - 1]["answer"],
                            }
                        ]
                        if not disable_golden_context
                        else []
                    )
                    + [
                        {
                            "role": "user",
                            "content": follow_up_prompts_in_chat_template.format(
                                input=eg["multi_turns"][i]["input"],
                            ),
                        },
                    ],
                    add_generation_prompt=True,
                    tokenize=False,
                ).replace(sys_prompt_with_generation_prompt, "")
                + "This paper"
                for i in range(1, len(eg["multi_turns"]))
            ]

        return {
            "prompts": [first_turn_prompt] + follow_up_prompts,
            "ground_truth": [gt["answer"] for gt in eg["multi_turns"]],
        }
