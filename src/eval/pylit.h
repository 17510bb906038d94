/* Python literal parsing for VLMEvalKit's TSV `answer` column, which holds str(list_of_str):
 * ['CENTRE'], ["it's"], ['B a = \\frac { 1 } { 2 }\n'] and so on. */
#ifndef QVL_EVAL_PYLIT_H
#define QVL_EVAL_PYLIT_H

/* Parses a list or tuple of string literals, or a single string literal (taken as a one-element
 * list), the way Python's eval/ast.literal_eval reads it: single/double quotes, r/u prefixes,
 * adjacent-literal concatenation, every escape of a Python str literal (\\ \' \" \n \t \r \a \b \f
 * \v \ooo \xhh \uXXXX \UXXXXXXXX, backslash-newline; unknown escapes keep the backslash), a
 * trailing comma. Strings come out as UTF-8. Returns the count (>= 1) and a malloc'd array of
 * malloc'd strings in *out (free with qvl_pylit_free), or -1 + qvl_error "<reason> at offset N"
 * (no item prefix). An empty list, a non-string item or nesting is an error. */
int qvl_pylit_string_list(const char *s, char ***out);
void qvl_pylit_free(char **list, int n);

#endif
