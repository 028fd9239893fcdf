/* A stand-in for cuFFT (libcufft.so.11) in the CPU image.
 *
 * The astra-toolbox wheel's libastra.so.0 links libcudart.so.12 and libcufft.so.11, so
 * `import astra` needs both files even where no GPU is used; cuFFT is only called by ASTRA's
 * CUDA FBP filter. The real library (nvidia-cufft-cu12, 279 MB, plus the 92 MB nvJitLink it
 * loads) is replaced in docker/Dockerfile.cpu by this one: the five functions libastra.so.0
 * imports, under the version node it requires, each answering CUFFT_NOT_SUPPORTED. ASTRA's CPU
 * projectors and FBP do not touch it. The CUDA image keeps the real cuFFT.
 */
typedef int cufftResult;
typedef int cufftHandle;
#define CUFFT_NOT_SUPPORTED 16

cufftResult cufftPlan1d(cufftHandle *plan, int nx, int type, int batch)
{ (void)plan; (void)nx; (void)type; (void)batch; return CUFFT_NOT_SUPPORTED; }
cufftResult cufftDestroy(cufftHandle plan) { (void)plan; return CUFFT_NOT_SUPPORTED; }
cufftResult cufftSetStream(cufftHandle plan, void *stream)
{ (void)plan; (void)stream; return CUFFT_NOT_SUPPORTED; }
cufftResult cufftExecR2C(cufftHandle plan, void *in, void *out)
{ (void)plan; (void)in; (void)out; return CUFFT_NOT_SUPPORTED; }
cufftResult cufftExecC2R(cufftHandle plan, void *in, void *out)
{ (void)plan; (void)in; (void)out; return CUFFT_NOT_SUPPORTED; }
