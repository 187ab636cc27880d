/*
 * A PAM module for the rdsconn test harness: asks one question that is not
 * a password ("Verification code:", echo on, as a second factor would) and
 * accepts the answer given as its `answer=` argument.
 */
#define PAM_SM_AUTH
#include <security/pam_ext.h>
#include <security/pam_modules.h>
#include <stdlib.h>
#include <string.h>

PAM_EXTERN int pam_sm_authenticate(pam_handle_t *pamh, int flags, int argc,
                                   const char **argv) {
  const char *answer = NULL;
  char *response = NULL;
  int ok;
  (void)flags;
  for (int i = 0; i < argc; i++)
    if (strncmp(argv[i], "answer=", 7) == 0)
      answer = argv[i] + 7;
  if (pam_prompt(pamh, PAM_PROMPT_ECHO_ON, &response, "Verification code:") !=
          PAM_SUCCESS ||
      response == NULL)
    return PAM_AUTH_ERR;
  ok = answer != NULL && strcmp(response, answer) == 0;
  free(response);
  return ok ? PAM_SUCCESS : PAM_AUTH_ERR;
}

PAM_EXTERN int pam_sm_setcred(pam_handle_t *pamh, int flags, int argc,
                              const char **argv) {
  (void)pamh;
  (void)flags;
  (void)argc;
  (void)argv;
  return PAM_SUCCESS;
}
