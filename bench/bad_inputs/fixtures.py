"""The campaign's fixtures: a small BBC corpus and TSVs, a vocab, records, a tiny pretrained model, a tiny fine-tuned
classifier and its export, built once under the work folder (only the steps the selected cases need)."""
import os
import re
import time

from bench.bad_inputs.common import PRED, ROOT, SEQ, sh


class Fixtures:
    def __init__(self, root):
        self.root = root
        os.makedirs(root, exist_ok=True)
        j = lambda *p: os.path.join(root, *p)  # noqa: E731
        self.data = j("data")
        self.corpus = j("data", "corpus.txt")
        self.train_tsv = j("data", "train.tsv")
        self.vocab = j("vocab.txt")
        self.records = j("pre.tfrecord")
        self.ft_records = j("ft_records")
        self.pretrain = j("pretrain")
        self.clf = j("clf")
        self.export = j("clf", "export")
        self.config = os.path.join(ROOT, "configs", "tiny_bert.json")
        self.mrpc = os.path.join(ROOT, "tests", "fixtures", "glue", "MRPC")
        self.sst2 = os.path.join(ROOT, "tests", "fixtures", "glue", "SST-2")

    # placeholder -> the last fixture step it needs (steps: data, vocab, records, ft_records, pretrain, clf)
    STEP_OF = {"data": 0, "corpus": 0, "train_tsv": 0, "vocab": 1, "records": 2, "ft_records": 3, "pretrain": 4,
               "clf": 5, "export": 5}

    def steps_needed(self, selected):
        """Cases with a setup or a custom run may read any fixture; the others need what their args name."""
        need = -1
        for c in selected:
            if c.setup is not None or c.run is not None:
                return 5
            for a in c.args:
                for key in re.findall(r"\{(\w+)\}", a):
                    need = max(need, self.STEP_OF.get(key, -1))
        return need

    def build(self, log, upto=5):
        steps = [
            (self.corpus, ["-m", "data.bbc", f"--output_dir={self.data}", "--max_docs_per_label=6"]),
            (self.vocab, ["build_vocab.py", f"--input_file={self.corpus}", f"--output_file={self.vocab}",
                          "--vocab_size=1000"]),
            (self.records, ["create_pretraining_data.py", f"--input_file={self.corpus}",
                            f"--output_file={self.records}", f"--vocab_file={self.vocab}", f"--max_seq_length={SEQ}",
                            f"--max_predictions_per_seq={PRED}", "--dupe_factor=1", "--num_workers=1",
                            "--noprogress"]),
            (os.path.join(self.ft_records, "task_meta.json"),
             ["create_finetuning_data.py", "--task_name=bbc", f"--data_dir={self.data}", f"--vocab_file={self.vocab}",
              f"--max_seq_length={SEQ}", f"--output_dir={self.ft_records}", "--splits=train,dev"]),
            (os.path.join(self.pretrain, "checkpoint"),
             ["run_pretraining.py", f"--bert_config_file={self.config}", f"--input_file={self.records}",
              f"--output_dir={self.pretrain}", f"--vocab_file={self.vocab}", "--do_train",
              f"--max_seq_length={SEQ}", f"--max_predictions_per_seq={PRED}", "--train_batch_size=8",
              "--num_train_steps=2", "--num_warmup_steps=1", "--save_checkpoints_steps=2", "--seed=1",
              "--nodo_export"]),
            (os.path.join(self.clf, "export"),
             ["run_classifier.py", f"--bert_config_file={self.config}", f"--init_checkpoint={self.pretrain}",
              f"--output_dir={self.clf}", "--task_name=bbc", f"--data_dir={self.data}", f"--vocab_file={self.vocab}",
              f"--max_seq_length={SEQ}", "--train_batch_size=8", "--eval_batch_size=16", "--do_train", "--do_eval",
              "--num_train_epochs=1", "--seed=1", "--do_export"]),
        ]
        for done, args in steps[:upto + 1]:
            if os.path.exists(done):
                continue
            t = time.time()
            sh(args)
            log(f"fixture {os.path.relpath(done, self.root)}: {time.time() - t:.1f} s")
        self.export_version = sorted(os.listdir(self.export), key=int)[-1] if os.path.isdir(self.export) else None

    def paths(self):
        return dict(vocab=self.vocab, corpus=self.corpus, data=self.data, records=self.records,
                    ft_records=self.ft_records, pretrain=self.pretrain, clf=self.clf, export=self.export,
                    config=self.config, mrpc=self.mrpc, sst2=self.sst2, train_tsv=self.train_tsv,
                    repo=ROOT)

    def protected(self):
        return [self.data, self.vocab, self.records, self.ft_records, self.pretrain, self.clf,
                os.path.join(ROOT, "configs"), os.path.join(ROOT, "tests", "fixtures")]
