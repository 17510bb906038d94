/* One function per `qvl COMMAND`; argv[0] is the command name. Each returns the exit code. */
#ifndef QVL_CLI_COMMANDS_H
#define QVL_CLI_COMMANDS_H
int cmd_tokenize(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_mem(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_merge(int argc, char **argv);
int cmd_serve(int argc, char **argv);
#endif
